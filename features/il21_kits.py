"""The IL-21 kits as a laboratory report names them, and what is published about each.

The kit sets the scale of ``il21_pg_ml`` (the ``il21_assay`` categories of :mod:`features.schema`,
:data:`features.schema.IL21_KITS`);
a clinician knows the kit by the name on the report, not by a code. The evidence is that of
``docs/clinical-evidence.md`` §3 (Azzopardi et al., J Neurol Neurosurg Psychiatry 2014, 141 patients).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KitDetail:
    """One IL-21 kit.

    Attributes
    ----------
    printed_name : str
        The kit as a report names it.
    evidence : str
        What is published about its predictive value, in one line.
    """

    printed_name: str
    evidence: str


# Keyed by the il21_assay category; a category without an entry is shown by its label alone.
KIT_DETAILS: dict[str, KitDetail] = {
    "legacy_elisa": KitDetail(
        printed_name="IL-21 ELISA, original kit (withdrawn)",
        evidence="Azzopardi 2014, 141 patients: 542 vs 222 pg/mL in those who did and did not develop "
                 "autoimmunity (about 2.4-fold); the kit behind the IL-21 findings, since withdrawn."),
    "current_elisa": KitDetail(
        printed_name="IL-21 ELISA, current commercial kit",
        evidence="Azzopardi 2014, the same patients: 53.1 vs 9.3 pg/mL, about ten times lower than the original "
                 "kit, and no predictive value."),
}
