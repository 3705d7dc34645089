"""Every MLflow metric and tag name that training, promotion, serving and reports share.

Metric keys (all per endpoint ``<outcome>_<h>m``, e.g. ``thyroid_48m``):

- ``<endpoint>_<metric>``: observed, censored outcomes of the held-out test split (IPCW);
  ``bench_``, ``ext_<cohort>_`` and ``sub_<group>_`` prefixes for the benchmark cohort, the
  external cohorts and subgroups of the test split.
- ``truth_<cohort>_<treatment>_<endpoint>_<metric>``: the same patients' risks against the
  simulator's exact risks, per arm and for both arms together (``all``); ``cohort`` is
  ``bench`` or ``ext_<name>``.
- ``contrast_<cohort>_<endpoint>_<metric>``: alemtuzumab minus interferon beta-1a.
- ``interval_<cohort>_<arm>_<endpoint>_<metric>``: the 95% risk intervals against the simulator's true
  risk (coverage per arm; for ``all`` arms also their width, the misses' side and the spread).
- ``added_<predictor>_<endpoint>_<metric>``: what a predictor adds, the family against itself refitted
  without it, on the held-out split; ``added_<predictor>_ext_<cohort>_<endpoint>_<metric>`` on an
  external cohort measured with a named IL-21 kit.
"""

from __future__ import annotations

# The registered model, and the aliases promotion sets (never stages, never "latest").
MODEL_NAME = "autoimmunity-risk"
CHAMPION = "champion"
CHALLENGER = "challenger"

# Tags of runs.
EXPERIMENT_TAG = "autorisk.experiment"
CONFIG_DIGEST_TAG = "autorisk.config_digest"
ROLE_TAG = "autorisk.role"
FAMILY_TAG = "autorisk.family"
OUTCOME_TAG = "autorisk.outcome"
ROLE_PARENT, ROLE_MODEL, ROLE_TRIAL, ROLE_PROMOTION = "parent", "model", "tuning-trial", "promotion"
ROLE_VALIDATION, ROLE_RECALIBRATION = "validation", "recalibration"
# An experiment trained on files with fewer patients than Riley's minimum sample size: the outcomes concerned.
BELOW_MINIMUM_SAMPLE_SIZE_TAG = "autorisk.below_minimum_sample_size"
# A validation's or a recalibration's run names the registered version it is about.
MODEL_TAG = "autorisk.model"
MODEL_VERSION_TAG = "autorisk.model_version"
VALIDATIONS_EXPERIMENT = "validations"
RECALIBRATIONS_EXPERIMENT = "recalibrations"

# Tags of registered model versions.
VERSION_FAMILY_TAG = "family"
VERSION_EXPERIMENT_TAG = "experiment"
VERSION_METRIC_TAG = "mean_log_loss_over_null"
# How a version came to be (training, or a recalibration of another version), and its validations' runs.
VERSION_ORIGIN_TAG = "origin"
ORIGIN_TRAINING, ORIGIN_RECALIBRATION = "training", "recalibration"
VERSION_VALIDATIONS_TAG = "validations"
# A recalibrated version's lineage.
VERSION_SOURCE_TAG, VERSION_FILE_TAG, VERSION_METHOD_TAG = "recalibrated_from", "recalibration_file_sha256", \
    "recalibration_method"

# The promotion metric and the calibration check it comes with.
PROMOTION_METRIC = "mean_log_loss_over_null"
PROMOTION_HORIZONS_MONTHS = (24, 48)

# The cohorts a metric is measured on: the held-out split (no prefix), the benchmark cohort and each
# external cohort (cohort_prefix, external_cohort).
BENCHMARK_COHORT = "bench"
# Patients of the benchmark cohort (of the held-out split without one) whose risk falls from a month to the next.
FALLING_RISK_METRIC = "patients_with_falling_risk"

# Subsets of the metrics against observed outcomes at one horizon (models.evaluation.evaluate_at_horizon),
# each where it is shown:
# the model card's performance tables, a column each (AUROC and AUPRC with their 95% intervals);
CARD_METRICS = ("auroc", "oracle_auroc", "auroc_over_oracle", "auprc", "brier", "calibration_slope",
                "oracle_calibration_slope", "calibration_intercept", "observed_over_expected", "ici",
                "mean_abs_risk_error", "events")
# the headline table of a family's run (models.headline);
HEADLINE_METRICS = ("auroc", "auroc_lo", "auroc_hi", "auroc_over_oracle", "calibration_slope",
                    "oracle_calibration_slope")
# per subgroup of the held-out split, at SUBGROUP_HORIZONS_MONTHS (sub_<group>_<endpoint>_<metric>);
SUBGROUP_METRICS = ("auroc", "calibration_slope", "calibration_intercept", "observed_over_expected")
SUBGROUP_HORIZONS_MONTHS = (24, 48)
# what GET /model serves per endpoint of the held-out split and the benchmark cohort;
SERVED_METRICS = ("auroc", "auroc_lo", "auroc_hi", "calibration_slope", "calibration_intercept",
                  "observed_over_expected")
# and against the simulator's truth per arm of the benchmark cohort (models.evaluation.evaluate_against_truth).
SERVED_TRUTH_METRICS = ("mean_risk", "mean_true_risk", "auroc_over_oracle", "calibration_slope")
# Learning curves (pipelines.sample_size), per training size.
CURVE_METRICS = ("auroc", "oracle_auroc", "auroc_over_oracle", "calibration_slope", "mean_abs_risk_error")


# Added value of a predictor (pipelines.biomarker): ΔAUROC, NRI and IDI with their paired bootstrap 95%
# intervals (_lo, _hi), the parts for events and non-events, and the mean net-benefit difference over
# 5-30%. The run's biomarker/added_value.csv has every figure (the parts' intervals, AUROC with and
# without, onsets); as metrics, the few a compare view needs keep the run page readable.
ADDED_VALUE_METRICS = ("delta_auroc", "delta_auroc_lo", "delta_auroc_hi", "nri", "nri_lo", "nri_hi", "nri_events",
                       "nri_nonevents", "idi", "idi_lo", "idi_hi", "idi_events", "idi_nonevents",
                       "delta_net_benefit_mean")
# The risk intervals on the benchmark cohort (pipelines.intervals): per arm the coverage of the true risk;
# for both arms together also the coverage from the refits' own spread, the misses above and below, the
# mean width, the served spread over the refits' (median) and the correlation of their logarithms, and
# the instability index (mean absolute difference between a refit's risk and the model's), and the RMS
# error to the true log cumulative hazard over the RMS spread (about 1 when refitting explains the error).
INTERVAL_ARM_METRICS = ("coverage", "mean_width", "coverage_complete", "mean_width_complete", "complete_share")
INTERVAL_METRICS = ("coverage", "coverage_refits", "miss_above", "miss_below", "mean_width", "spread_ratio",
                    "spread_correlation", "instability_mape", "error_over_spread")
# Fewest onsets with a known status for an endpoint to be compared at all.
ADDED_VALUE_MIN_EVENTS = 5


def external_cohort(name: str) -> str:
    """``ext_clinic``: the metric cohort of the external cohort ``clinic``."""
    return f"ext_{name}"


def cohort_prefix(cohort: str | None = None) -> str:
    """The prefix of a cohort's metrics: ``""`` for the held-out split (None), ``bench_``, ``ext_clinic_``."""
    return f"{cohort}_" if cohort else ""


def endpoint_metric(endpoint: str, metric: str, prefix: str = "") -> str:
    """``thyroid_24m_auroc``, ``bench_thyroid_24m_auroc``, ``ext_clinic_itp_48m_calibration_slope``."""
    return f"{prefix}{endpoint}_{metric}"


def subgroup_metric(subgroup: str, endpoint: str, metric: str) -> str:
    """``sub_female_thyroid_24m_auroc``: a subgroup of the held-out split."""
    return f"sub_{subgroup}_{endpoint}_{metric}"


def truth_metric(cohort: str, treatment: str, endpoint: str, metric: str) -> str:
    """``truth_bench_interferon_beta_1a_thyroid_48m_mean_risk``."""
    return f"truth_{cohort}_{treatment}_{endpoint}_{metric}"


def contrast_metric(cohort: str, endpoint: str, metric: str) -> str:
    """``contrast_bench_thyroid_48m_excess_correlation``."""
    return f"contrast_{cohort}_{endpoint}_{metric}"


def added_value_metric(predictor: str, endpoint: str, metric: str, prefix: str = "") -> str:
    """``added_il21_pg_ml_thyroid_24m_delta_auroc``, ``added_il21_pg_ml_ext_current-assay_thyroid_24m_nri``."""
    return f"added_{predictor}_{prefix}{endpoint}_{metric}"


def validation_metric(outcome: str, treatment: str, horizon_months: int, metric: str, prefix: str = "") -> str:
    """``thyroid_alemtuzumab_24m_o_e``; ``before_`` / ``after_`` prefixes for a recalibration's held-out checks."""
    return f"{prefix}{outcome}_{treatment}_{horizon_months}m_{metric}"


def interval_metric(cohort: str, arm: str, endpoint: str, metric: str) -> str:
    """``interval_bench_alemtuzumab_thyroid_24m_coverage``, ``interval_bench_all_itp_48m_mean_width``."""
    return f"interval_{cohort}_{arm}_{endpoint}_{metric}"


def trial_metric(endpoint: str | None = None) -> str:
    """``validation_log_loss_over_null`` of a tuning trial; ``validation_thyroid_24m_log_loss_over_null`` per endpoint."""
    return f"validation_{endpoint}_log_loss_over_null" if endpoint else "validation_log_loss_over_null"


def tuning_metric(outcome: str, metric: str) -> str:
    """``tuning_thyroid_trials``, ``tuning_itp_best_log_loss_over_null``: an outcome's study in the parent run."""
    return f"tuning_{outcome}_{metric}"
