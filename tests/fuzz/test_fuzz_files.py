"""Fuzz the file formats an operator hands a node: policy bundles, model files, node config.

* policy bundles (TOML + the condition language): the example bundles, byte-
  mutated, and rules whose ``when`` is a random token soup of the language
  (deep nesting, huge literals, unknown names); a bundle that loads is also
  *evaluated* on a small batch. Oracle: ``Bundle`` or :class:`PolicyError`;
  evaluation never raises.
* model files (the pickle-free array container): real compiled models, byte-
  mutated and with their JSON header's values swapped. Oracle: a model that
  scores a feature matrix to finite values in [0, 1], or :class:`ModelError`.
* ``node.toml`` and the ``[p2p]`` table: mutated text through
  :func:`load_settings` and :meth:`P2PSettings.from_mapping`. Oracle: settings
  or :class:`ConfigError`.
"""

from __future__ import annotations

import json
import struct
import tomllib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from fuzz_support import WEIRD, fuzz_modes, mutate_bytes, mutate_value, run_target, scratch_dir
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from fraudnet.adapters.p2p import files
from fraudnet.adapters.p2p.settings import P2PSettings
from fraudnet.config import load_settings, render_default_toml
from fraudnet.core.features import FEATURE_NAMES, FeatureConfig, default_model_features
from fraudnet.core.policy import PolicyEngine, PolicyHolder, load_bundle
from fraudnet.core.policy.inputs import PolicyInput
from fraudnet.core.scoring import decode_model, encode_model
from fraudnet.core.signals import Validator
from fraudnet.errors import ConfigError, KeyFileError, ModelError, PolicyError
from fraudnet.training.convert import compile_sklearn

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = [p.read_bytes() for p in sorted((ROOT / "examples" / "policies").glob("*.toml"))]

# -- policy bundles ------------------------------------------------------------------

_TOKENS = ["amount", "score", "mcc", "channel", "country", "hour", "card_count_1h", "x",
           "in_list", "(", ")", "[", "]", ",", "and", "or", "not", "in", "==", "!=", "<", "<=",
           ">", ">=", "+", "-", "*", "/", "%", "1", "0", "-1", "1e308", "1e999", "0.0", "nan",
           '"ecom"', "'", '"', "9" * 400, "true", "abs(", "min(", "max(", "log(", "velocity("]  # fmt: skip
_HEADER = '[policy]\nname = "fuzz"\nversion = 1\n\n[[velocity]]\nid = "card_count_1h"\n' \
          'entity = "card"\nmeasure = "count"\nwindow = "1h"\n\n'  # fmt: skip


@st.composite
def conditions(draw: st.DrawFn) -> bytes:
    toks = draw(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=30))
    when = " ".join(toks)
    if draw(st.integers(0, 10)) == 0:
        when = "(" * draw(st.integers(50, 5000)) + when + ")" * draw(st.integers(0, 5000))
    when = when.replace("\\", "").replace("'''", "")
    rule = f"[[rules]]\nid = \"r1\"\nversion = 1\ndescription = \"d\"\naction = \"review\"\n" \
           f"when = '''{when}'''\n"  # fmt: skip
    return (_HEADER + rule).encode()


_BATCH = PolicyInput.from_arrays(
    ts_s=1.7e9 + np.arange(6) * 10.0, amount=np.array([0.0, 1.0, 1e9, 5.0, 0.01, 250.0]),
    card_key=np.arange(6).astype(np.uint64), terminal_key=np.zeros(6, dtype=np.uint64),
    score=np.linspace(0, 1, 6), mcc=np.array([5411, 5732, -1, 0, 4829, 9999]),
    features=np.random.default_rng(2).normal(size=(6, len(FEATURE_NAMES))),
)  # fmt: skip


def _check_bundle(data: bytes) -> None:
    bundle = load_bundle(data, "fuzz.toml")
    engine = PolicyEngine(PolicyHolder(bundle, now_us=0))
    with np.errstate(all="ignore"):
        res = engine.evaluate_many([str(i) for i in range(6)], _BATCH, 1.7e9).live
    assert len(res) == 6


# -- model files ----------------------------------------------------------------------


def _models() -> list[bytes]:
    names = default_model_features()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(names)))
    y = (x[:, 0] + rng.normal(size=300) > 1).astype(int)
    rf = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(x, y)
    lr = LogisticRegression(max_iter=200).fit(x, y)
    return [encode_model(compile_sklearn(m, names, FeatureConfig())) for m in (rf, lr)]


MODELS = _models()
_X = np.random.default_rng(1).normal(size=(20, len(FEATURE_NAMES)))  # schema order


@st.composite
def model_files(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(MODELS))
    if draw(st.booleans()):
        magic = (b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00", b'"shape": [', b"-1", b"1e400", b"[[[[")
        return draw(mutate_bytes([data], magic=magic))
    # structure-aware: change values inside the JSON header (shapes, offsets, dtypes, meta)
    (hlen,) = struct.unpack_from("<I", data, 4)
    header = json.loads(data[8 : 8 + hlen])
    header = draw(mutate_value([header]))
    raw = json.dumps(header, default=repr).encode()
    return data[:4] + struct.pack("<I", len(raw)) + raw + data[8 + hlen :]


def _check_model(data: bytes) -> None:
    model = decode_model(data, "fuzz.model")
    with np.errstate(all="ignore"):
        scores, _contrib = model.predict_many(_X)
    assert scores.shape == (20,)
    assert np.all((scores >= 0.0) & (scores <= 1.0)), "an accepted model scores outside [0, 1]"


# -- config ------------------------------------------------------------------------------

_CFG_DIR = scratch_dir("fraudnet-fuzz-cfg-")
_P2P = (
    '\n[p2p]\nlisten = "/ip4/127.0.0.2/tcp/4001"\nnetwork_id = "net"\n'
    'network_key_file = "network.key"\nflush_interval_ms = 100\n'
    'peers = ["/ip4/127.0.0.3/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"]\n'
    f'members = {{ bank-a = "{"ab" * 32}", bank-b = "{"cd" * 32}" }}\n'
)
CONFIGS = [
    render_default_toml("node-a", "bank-a", "127.0.0.1:8080").encode(),
    (render_default_toml("node-b", "bank-b", "127.0.0.1:8081") + _P2P).encode(),
]
_P2P_TABLE = tomllib.loads(_P2P)["p2p"]


@st.composite
def configs(draw: st.DrawFn) -> tuple[int, Any]:
    if draw(st.integers(0, 2)) == 0:
        return 1, draw(mutate_value([_P2P_TABLE]))
    magic = (b"[[", b"]]", b'"""', b"= ", b"\n[api]\n", b"\x00", b"inf", b"1e999", b"{", b"[" * 900)
    return 0, draw(mutate_bytes(CONFIGS, magic=magic))


def _check_config(case: tuple[int, Any]) -> None:
    kind, value = case
    if kind == 1:
        P2PSettings.from_mapping(value, "node.toml", base_dir=_CFG_DIR)
        return
    (_CFG_DIR / "node.toml").write_bytes(value)
    s = load_settings(_CFG_DIR, env={})
    if "p2p" in s.extra:
        P2PSettings.from_mapping(s.extra["p2p"], "node.toml", base_dir=_CFG_DIR)


# -- the targets -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_policy_bundles(mode: str) -> None:
    magic = (b"[[rules]]\n", b'"""', b"'''", b"(" * 600, b" and ", b"\n\n", b"= ", b"\x00", b"\\u")
    cases = st.one_of(mutate_bytes(BUNDLES, magic=magic), conditions())
    run_target("policy_bundle", mode, cases, _check_bundle, (PolicyError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_model_files(mode: str) -> None:
    run_target("model_file", mode, model_files(), _check_model, (ModelError,))


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_node_config(mode: str) -> None:
    run_target("node_config", mode, configs(), _check_config, (ConfigError,))


def test_seeds_load() -> None:
    for b in BUNDLES:
        _check_bundle(b)
    for m in MODELS:
        _check_model(m)
    for c in CONFIGS:
        _check_config((0, c))
    assert WEIRD is not None


def test_model_header_nested_too_deeply_is_a_model_error() -> None:
    head = b"[" * 100_000
    with pytest.raises(ModelError, match="corrupt header"):
        decode_model(b"FNMD" + struct.pack("<I", len(head)) + head)


def test_model_array_entry_of_infinite_length_is_a_model_error() -> None:
    # found by the long pass: JSON allows Infinity, and int(inf) raised OverflowError
    head = json.dumps({"meta": {}, "arrays": [{"name": "feature", "dtype": "<i4",
                                               "shape": [1], "offset": 0,
                                               "length": float("inf")}]}).encode()  # fmt: skip
    with pytest.raises(ModelError, match="corrupt array entry"):
        decode_model(b"FNMD" + struct.pack("<I", len(head)) + head + b"\0" * 8)


# -- p2p state and key files ------------------------------------------------------------

_STATE_DIR = scratch_dir("fraudnet-fuzz-p2p-")
_REPLAY = msgpack.packb({"v": 1, "windows": {"bank-a": [10, [8, 9, 10]], "bank-b": [3, [3]]}})
_KEYFILE = (
    b"# epoch starts key\n0 1735689600 " + b"ab" * 32 + b"\n1 1767225600 " + b"cd" * 32 + b"\n"
)


@st.composite
def p2p_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["seq", "replay", "keys"]))
    if kind == "seq":
        return kind, draw(mutate_bytes([b"1000\n", b"18446744073709551615\n"],
                                       magic=(b"9" * 30, b"9" * 5000, b"-", b"\x00", b"\xff")))  # fmt: skip
    if kind == "replay":
        if draw(st.booleans()):
            return kind, msgpack.packb(draw(mutate_value([msgpack.unpackb(_REPLAY)])))
        return kind, draw(mutate_bytes([_REPLAY]))
    return kind, draw(mutate_bytes([_KEYFILE], magic=(b"9" * 5000, b"#", b"\n", b" ", b"zz")))


def _check_p2p_file(case: tuple[str, bytes]) -> None:
    kind, data = case
    if kind == "seq":
        (_STATE_DIR / files.SEQ_FILE).write_bytes(data)
        assert 0 <= files.read_seq(_STATE_DIR) < 2**64
    elif kind == "replay":
        (_STATE_DIR / files.REPLAY_FILE).write_bytes(data)
        snap = files.read_replay_state(_STATE_DIR)
        try:  # exactly what P2PService does at start
            Validator("net", {}).restore(snap)
        except ValueError as e:
            raise ConfigError(f"replay state: {e}") from None
    else:
        path = _STATE_DIR / "network.key"
        path.write_bytes(data)
        path.chmod(0o600)
        ring = files.load_network_keyring(path, 3600)
        assert ring.epochs


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_p2p_state_and_key_files(mode: str) -> None:
    run_target("p2p_files", mode, p2p_files(), _check_p2p_file, (ConfigError, KeyFileError))


def test_sequence_state_of_5000_digits_is_a_config_error() -> None:
    (_STATE_DIR / files.SEQ_FILE).write_bytes(b"9" * 5000)
    with pytest.raises(ConfigError, match="corrupt sequence state"):
        files.read_seq(_STATE_DIR)


# -- node key files -----------------------------------------------------------------------

_KEY_DIR = scratch_dir("fraudnet-fuzz-keys-")


def _pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))  # fmt: skip


def _key_seeds() -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec, x448
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ed = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
    return [_pem(ed), _pem(x448.X448PrivateKey.generate()),
            _pem(ec.generate_private_key(ec.SECP256R1()))]  # fmt: skip


KEY_SEEDS = _key_seeds()


@st.composite
def key_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["node.key", "local.secret", "api.token"]))
    if kind == "node.key":
        if draw(st.booleans()):  # mutate inside the base64 DER, keeping the PEM armour
            import base64

            pem = draw(st.sampled_from(KEY_SEEDS))
            der = base64.b64decode(b"".join(pem.splitlines()[1:-1]))
            der = draw(mutate_bytes([der], magic=(b"\x06\x03\x2b\x65\x7f", b"\x30\x82\xff\xff")))
            return kind, (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der)
                          + b"-----END PRIVATE KEY-----\n")  # fmt: skip
        return kind, draw(mutate_bytes(KEY_SEEDS))
    seed = b"ab" * 32 + b"\n" if kind == "local.secret" else b"t0k3n-" * 5 + b"\n"
    return kind, draw(mutate_bytes([seed], magic=(b"\xff", b"\x00", b"zz", b"\n")))


def _check_key_file(case: tuple[str, bytes]) -> None:
    from fraudnet.adapters.storage import keys

    name, data = case
    path = _KEY_DIR / name
    path.write_bytes(data)
    path.chmod(0o600)
    loader = {"node.key": keys.load_node_key, "local.secret": keys.load_local_secret,
              "api.token": keys.load_api_token}[name]  # fmt: skip
    assert loader(_KEY_DIR) is not None


@pytest.mark.parametrize("mode", fuzz_modes())
def test_fuzz_node_key_files(mode: str) -> None:
    run_target("key_files", mode, key_files(), _check_key_file, (KeyFileError,))


def test_a_pem_key_of_an_unknown_algorithm_is_a_key_file_error() -> None:
    import base64

    from fraudnet.adapters.storage.keys import load_node_key

    der = bytearray(base64.b64decode(b"".join(KEY_SEEDS[1].splitlines()[1:-1])))
    i = der.find(bytes([0x06, 0x03, 0x2B, 0x65, 0x6F]))  # the X448 OID 1.3.101.111
    der[i + 4] = 0x7F  # 1.3.101.127: no such algorithm
    path = _KEY_DIR / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(bytes(der))
                     + b"-----END PRIVATE KEY-----\n")  # fmt: skip
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_node_key(_KEY_DIR)


def test_a_forest_leaf_value_outside_0_1_is_refused() -> None:
    # found by the long pass: a forest file whose value array held 4.2e180 was accepted
    # and scored 1.4e180
    model = decode_model(MODELS[0])
    assert model.kind == "forest"
    arrays = dict(model.arrays)
    arrays["value"] = arrays["value"].copy()
    arrays["value"][-1] = 4.2e180
    with pytest.raises(ModelError, match=r"probabilities in \[0, 1\]"):
        type(model)(kind="forest", feature_names=model.feature_names, arrays=arrays,
                    feature_config=model.feature_config)  # fmt: skip


def test_openssl_internal_error_on_a_damaged_key_is_a_key_file_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # found by the long pass: after some damaged keys OpenSSL's error queue made
    # cryptography raise InternalError (not ValueError) for the next damaged key
    from cryptography.exceptions import InternalError
    from cryptography.hazmat.primitives import serialization

    from fraudnet.adapters.storage.keys import load_node_key

    def refuse(data: bytes, password: bytes | None) -> None:
        raise InternalError("Unknown OpenSSL error", [])

    path = _KEY_DIR / "node.key"
    path.write_bytes(KEY_SEEDS[0])
    path.chmod(0o600)
    monkeypatch.setattr(serialization, "load_pem_private_key", refuse)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_node_key(_KEY_DIR)


def test_a_linear_model_that_could_score_nan_is_refused_and_the_kernel_fails_closed() -> None:
    """Fuzz finding: a linear model with huge finite parameters scored NaN (no threshold
    blocks NaN). Such a file is now refused, and a NaN logit scores 1.0 (fail closed)."""
    from fraudnet.core.scoring.compiled import CompiledModel, linear_many

    m = decode_model(MODELS[1])
    arrays = dict(m.arrays)
    arrays["coef"] = arrays["coef"].copy()
    arrays["scale"] = arrays["scale"].copy()
    arrays["coef"][:2] = (1e300, -1e300)
    arrays["scale"][:2] = 1e-300
    with pytest.raises(ModelError, match="out of range"):
        hostile = CompiledModel(kind=m.kind, feature_names=m.feature_names, arrays=arrays,
                                feature_config=m.feature_config, meta=m.meta)  # fmt: skip
        decode_model(encode_model(hostile))
    # the kernel (and its pure twin) on inputs that make +inf and -inf terms
    x = np.array([[1e308, 1e308], [1.0, 1.0]])
    for fn in (linear_many, getattr(linear_many, "py_func", linear_many)):
        scores, contrib = np.zeros(2), np.zeros((2, 2))
        with np.errstate(all="ignore"):
            fn(x, np.array([0, 1]), np.array([1e10, -1e10]), np.zeros(2), np.ones(2), 0.0,
               scores, contrib)  # fmt: skip
        assert scores[0] == 1.0 and scores[1] == 0.5
