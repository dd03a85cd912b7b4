"""``fraudnet bench consensus``: verdict formation latency across N real node processes.

``--nodes`` (default 5) ``fraudnet node run`` processes form one network on
127.0.0.(10+i) with a genesis roster of all of them (f = (n-1)//3, block
quorum 2f+1). For each of ``--cards`` cards, members 0..2f-1 first see it
with a high local score (their attestations form a step-up verdict), then,
``--gap-ms`` later, member 2f sees it: its attestation is the *deciding* one.
Latency per card = the latest time any node derived the block verdict minus
the deciding attestation's ``issued_at_us`` (signed immediately before it is
published; one host clock). Times come from the ``verdict`` records each node
writes to its audit log when its verdict changes. ``p50_ms``/``p99_ms`` are
over cards ("every node holds the verdict"); ``node_p50_ms``/``node_p99_ms``
over (card, node) pairs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click


def _decide(ep: dict[str, Any], tx_id: str, card: str) -> None:
    import requests

    r = requests.post(
        f"{ep['api']}/v1/decide",
        headers={"Authorization": f"Bearer {ep['token']}"},
        json={"tx_id": tx_id, "timestamp": int(time.time()), "card": card,
              "terminal_id": "T-bench", "amount": "300.00"},
        timeout=10,
    )  # fmt: skip
    if r.status_code != 200:
        raise click.ClickException(f"decide at {ep['api']}: HTTP {r.status_code}")


def _verdict_times(node_dir: Path) -> dict[str, tuple[int, int]]:
    """entity hex -> (at_us of the first block verdict, deciding issued_at_us)."""
    from fraudnet.adapters.storage.audit_files import iter_payloads
    from fraudnet.core.audit.framing import parse_record_payload
    from fraudnet.core.audit.schema import decode_body

    out: dict[str, tuple[int, int]] = {}
    for _, payload in iter_payloads(node_dir / "audit"):
        rec = decode_body(parse_record_payload(payload)[2])
        if rec.kind != "verdict" or rec.action != "block":
            continue
        d = dict(rec.details)
        ent = rec.resource.split(":", 1)[1]
        if ent not in out:
            issued = d["deciding_issued_at_us"]
            out[ent] = (rec.at_us, issued if isinstance(issued, int) else rec.at_us)
    return out


def _block_count(store: Path) -> int:
    """Distinct entities with a block certificate (a renewal in a new window adds another)."""
    from fraudnet.adapters.storage.verdicts import read_certificates

    if not store.exists():
        return 0
    try:
        return len({c.entity for c in read_certificates(store) if c.level == "block"})
    except Exception:  # an append in progress: poll again
        return 0


def run(
    nodes: int, cards: int, gap_ms: float, root: Path, direct: bool | None = None
) -> dict[str, Any]:
    from fraudnet.replay.generator import luhn_complete
    from fraudnet.testing import init_network, running_nodes, wait_for

    f = (nodes - 1) // 3
    quorum = 2 * f + 1
    dirs = init_network(root, nodes, roster_f=f, network_id="benchnet", direct=direct)
    card_list = [luhn_complete(f"4999{os.getpid() % 1000:03d}{i:07d}") for i in range(cards)]
    with running_nodes(dirs) as eps:

        def connected() -> bool:
            import requests

            for ep in eps:
                text = requests.get(f"{ep['api']}/metrics", timeout=5).text
                line = [
                    x for x in text.splitlines() if x.startswith("fraudnet_p2p_connected_members ")
                ]
                if not line or float(line[0].split()[1]) < nodes - 1:
                    return False
            return True

        wait_for(connected, 90, "full mesh")
        time.sleep(2.0)  # pacing, not synchronisation: let GossipSub build its mesh (heartbeats)
        for i, card in enumerate(card_list):
            for m in range(quorum - 1):
                _decide(eps[m], f"b{i}-m{m}", card)
            time.sleep(gap_ms / 1000)  # pacing so the next attestation is the deciding one
            _decide(eps[quorum - 1], f"b{i}-m{quorum - 1}", card)
        stores = [d / "state" / "verdicts.store" for d in dirs]
        wait_for(lambda: all(_block_count(s) >= cards for s in stores), 120, "block verdicts")
    per_node = [_verdict_times(d) for d in dirs]
    lat_card: list[float] = []
    lat_pair: list[float] = []
    for ent in per_node[0]:
        times = [pn.get(ent) for pn in per_node]
        if any(t is None for t in times):
            continue
        decided = max(t[1] for t in times if t is not None)
        ats = [t[0] for t in times if t is not None]
        lat_card.append((max(ats) - decided) / 1000)
        lat_pair += [(a - decided) / 1000 for a in ats]
    lat_card.sort()
    lat_pair.sort()

    def pct(xs: list[float], p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) if xs else float("nan")

    return {
        "nodes": nodes,
        "direct": "auto" if direct is None else direct,
        "f": f,
        "quorum": quorum,
        "cards": cards,
        "verdicts": len(lat_card),
        "p50_ms": pct(lat_card, 0.50),
        "p99_ms": pct(lat_card, 0.99),
        "max_ms": round(lat_card[-1], 2) if lat_card else float("nan"),
        "node_p50_ms": pct(lat_pair, 0.50),
        "node_p99_ms": pct(lat_pair, 0.99),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


@click.command("consensus")
@click.option("--nodes", default=5, show_default=True, type=click.IntRange(4, 10))
@click.option("--cards", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--gap-ms", default=200.0, show_default=True, help="pause before the deciding flag")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="keep node dirs here")
@click.option("--direct/--mesh-only", default=None,
              help="p2p.direct (default: the node's auto = direct for <= 16 peers)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def cli(
    nodes: int, cards: int, gap_ms: float, keep: Path | None, direct: bool | None, as_json: bool
) -> None:
    """Deciding attestation published -> block verdict held at every node (real processes)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        res = run(nodes, cards, gap_ms, keep, direct)
    else:
        with tempfile.TemporaryDirectory(prefix="fraudnet-bench-consensus-") as tmp:
            res = run(nodes, cards, gap_ms, Path(tmp), direct)
    if as_json:
        click.echo(json.dumps(res))
    else:
        for k, v in res.items():
            click.echo(f"{k:>12}: {v}")
