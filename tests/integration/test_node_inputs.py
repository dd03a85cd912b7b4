"""Ingest paths and transport options of a real node process: resume, msgpack, TLS, shedding."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests

from fraudnet.core.records import decode_decisions
from fraudnet.testing import FRAUDNET, read_topic, run_cli, running_node, wait_for

pytestmark = pytest.mark.integration


def _init(tmp_path: Path, name: str, extra_toml: str = "") -> Path:
    d = tmp_path / name
    run_cli("node", "init", str(d))
    toml = (d / "node.toml").read_text().replace("# USD = 0.92", "USD = 0.92")
    (d / "node.toml").write_text(toml + extra_toml)
    return d


def test_ingest_resumes_after_client_crash_without_deciding_twice(tmp_path: Path) -> None:
    d = _init(tmp_path, "n")
    f = tmp_path / "tx.csv"
    run_cli("generate", "--out", str(f), "-n", "6000", "--seed", "5")
    header = f.read_text().splitlines()[0].split(",")
    bad_amount = {c: "x" for c in header} | {
        "tx_id": "g_bad", "timestamp": "2024-04-01T00:00:00Z", "card": "4111111111111111",
        "terminal_id": "T1", "amount": "abc", "currency": "EUR", "mcc": "5411",
        "channel": "pos", "country": "FR", "label": "0",
    }  # fmt: skip
    with f.open("a") as fh:  # two broken lines: dead-lettered with their file location
        fh.write("only,three,columns\n")
        fh.write(",".join(bad_amount[c] for c in header) + "\n")
    state = tmp_path / "progress.json"
    with running_node(d) as ep:
        proc = subprocess.Popen(
            [*FRAUDNET, "ingest", str(f), "--node", str(d), "-q", "--batch", "100",
             "--concurrency", "1", "--state", str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for(lambda: state.exists() and json.loads(state.read_text())["acked"] >= 1000, 60,
                 "first acknowledgements")  # fmt: skip
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        acked = json.loads(state.read_text())["acked"]
        assert 1000 <= acked < 6002
        out = run_cli(
            "ingest", str(f), "--node", str(d), "-q", "--batch", "100", "--state", str(state)
        )
        total = json.loads(out.stdout.strip().splitlines()[-1])
        assert total["records"] == 6002
        assert total["dead_lettered"] == 2
        # everything before the crash was acknowledged once; a batch in flight at the
        # crash may be re-sent and is then answered as duplicates, never re-decided
        assert total["decided"] + total["dead_lettered"] + total["duplicates"] >= 6002
        health = requests.get(f"{ep['api']}/health", timeout=5).json()
        assert health["decided"] == 6000 and health["dead_lettered"] == 2
        vals = read_topic(ep["broker"], ep["topics"]["decisions"],
                          until=lambda vs: sum(len(decode_decisions(v)) for v in vs) >= 6000)  # fmt: skip
        ids = [x.tx_id for v in vals for x in decode_decisions(v)]
        assert len(ids) == len(set(ids)) == 6000
        dls = read_topic(ep["broker"], ep["topics"]["dead_letters"], until=lambda vs: len(vs) >= 2)
        reasons = sorted(json.loads(v)["reason"] for v in dls)
        assert any(f"expected {len(header)} columns, found 3" in r for r in reasons)
        assert any("decimal amount" in r for r in reasons)
        assert all(b"4111111111111111" not in v for v in dls)


def test_msgpack_values_on_the_ingest_topic(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    d = _init(tmp_path, "m")
    text = (d / "node.toml").read_text().replace('format = "json"', 'format = "msgpack"')
    (d / "node.toml").write_text(text)
    with running_node(d) as ep:
        p = Producer({"bootstrap.servers": ep["broker"], "log_level": 3})
        for i in range(200):
            rec = {"tx_id": f"mp-{i}", "timestamp": 1714564800 + i, "card": "4111111111111111",
                   "terminal_id": f"T{i % 5}", "amount_minor": 500 + i, "currency": "EUR"}  # fmt: skip
            p.produce(ep["topics"]["tx_in"], msgpack.packb(rec))
        p.produce(ep["topics"]["tx_in"], b"\xc1\xc1")  # never valid msgpack
        assert p.flush(10) == 0
        vals = read_topic(ep["broker"], ep["topics"]["decisions"],
                          until=lambda vs: sum(len(decode_decisions(v)) for v in vs) >= 200)  # fmt: skip
        assert sorted(x.tx_id for v in vals for x in decode_decisions(v)) == sorted(
            f"mp-{i}" for i in range(200)
        )
        dls = read_topic(ep["broker"], ep["topics"]["dead_letters"], until=lambda vs: len(vs) >= 1)
        assert "msgpack" in json.loads(dls[0])["reason"]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    c, k = tmp_path / "cert.pem", tmp_path / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))  # fmt: skip
    k.chmod(0o600)
    return c, k


def test_tls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    c, k = _self_signed(tmp_path)
    d = _init(tmp_path, "t")
    text = (d / "node.toml").read_text()
    text = text.replace('tls_cert = ""', f'tls_cert = "{c}"').replace(
        'tls_key = ""', f'tls_key = "{k}"'
    )
    (d / "node.toml").write_text(text)
    with running_node(d) as ep:
        assert ep["api"].startswith("https://")
        auth = {"Authorization": f"Bearer {ep['token']}"}
        tx = {"tx_id": "tls-1", "timestamp": "2024-05-01T10:00:00Z", "card": "c1",
              "terminal_id": "T1", "amount": "5.00"}  # fmt: skip
        r = requests.post(
            f"{ep['api']}/v1/decide", json=tx, headers=auth, timeout=10, verify=str(c)
        )
        assert r.status_code == 200 and r.json()["tx_id"] == "tls-1"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{ep['api']}/health", timeout=10)  # untrusted without the CA
        plain = ep["api"].replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{plain}/health", timeout=10)


def test_saturated_api_sheds_with_503_and_retry_after(tmp_path: Path) -> None:
    d = _init(tmp_path, "s")
    text = (d / "node.toml").read_text().replace("max_inflight = 256", "max_inflight = 1")
    (d / "node.toml").write_text(text)
    with running_node(d) as ep:
        auth = {"Authorization": f"Bearer {ep['token']}"}
        body = "\n".join(
            json.dumps({"tx_id": f"s-{i}", "timestamp": 1714564800 + i, "card": f"c{i % 50}",
                        "terminal_id": "T1", "amount": "3.00"}) for i in range(5000)
        )  # fmt: skip
        statuses: list[Any] = []

        def big() -> None:
            # the big request can itself be the one shed (a small one is in flight when it
            # arrives): a client re-sends it, as Retry-After says (bounded)
            for _ in range(200):
                r = requests.post(f"{ep['api']}/v1/ingest", data=body, headers=auth, timeout=120)
                if r.status_code != 503:
                    break
            statuses.append(r)

        shed = None
        for _attempt in range(5):  # bounded: the 503 needs the two requests to overlap
            t = threading.Thread(target=big)
            t.start()
            for i in range(200):
                r = requests.post(f"{ep['api']}/v1/decide", headers=auth, timeout=10, json={
                    "tx_id": f"x-{_attempt}-{i}", "timestamp": 1714564800, "card": "c1",
                    "terminal_id": "T1", "amount": "1.00"})  # fmt: skip
                if r.status_code == 503:
                    shed = r
                    break
            t.join(120)
            if shed is not None:
                break
            body = body.replace('"s-', f'"s{_attempt}-')
        assert shed is not None, "no request was shed"
        assert shed.headers["Retry-After"] == "1"
        assert all(s.status_code == 200 for s in statuses)
        h = requests.get(f"{ep['api']}/health", timeout=5).json()
        assert h["received"] == h["decided"] + h["dead_lettered"] + h["duplicates"]
