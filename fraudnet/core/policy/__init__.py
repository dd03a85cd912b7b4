"""Risk policy: rules, lists, segment thresholds, velocity, hot reload, shadow mode.

Sans-IO: bundles come in as bytes, decisions go out as arrays. See
docs/policy.md for the bundle format and how the node calls
:class:`PolicyEngine`.
"""

from .bundle import ACTIONS, LIST_KINDS, Bundle, EntityList, ListEntry, Rule, Segment, load_bundle
from .diff import diff_bundles
from .evaluate import ACTION_NAMES, Policy, PolicyResult, outcome_of
from .holder import EngineResult, Installed, PolicyEngine, PolicyHolder, ShadowStats
from .inputs import PolicyInput
from .velocity import VelocityKey, VelocitySpec, VelocityState, VelocityStore

__all__ = [
    "ACTIONS",
    "ACTION_NAMES",
    "LIST_KINDS",
    "Bundle",
    "EngineResult",
    "EntityList",
    "Installed",
    "ListEntry",
    "Policy",
    "PolicyEngine",
    "PolicyHolder",
    "PolicyInput",
    "PolicyResult",
    "Rule",
    "Segment",
    "ShadowStats",
    "VelocityKey",
    "VelocitySpec",
    "VelocityState",
    "VelocityStore",
    "diff_bundles",
    "load_bundle",
    "outcome_of",
]
