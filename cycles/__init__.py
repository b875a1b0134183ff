"""cycles: pure models of customer behaviour (polars frames in, frames out).

Owns purchase-cycle estimation (next purchase and its probability in a window; the
next-window ranker learns that probability from the chain's past windows),
brand-loyalty x volume cells, and customer value (RFM, ABC, CLV, lifecycle, share of
wallet, average weekly spend). Touches no disk and no database. Its parameters and their
defaults are `cycles.params` (ProfileParams, ValueParams); its errors `cycles.exceptions`.
"""

from cycles.abc import abc_classes
from cycles.brand_volume import brand_volume, observed_cells, usual_products
from cycles.clv import BetaGeoModel, GammaGammaModel, discounted_clv, group_clv
from cycles.lifecycle import lifecycle
from cycles.occasions import pair_occasions
from cycles.params import ProfileParams, ValueParams
from cycles.profile import PROFILE_COLUMNS, customer_profile
from cycles.purchase_cycle import PurchaseCycleEstimator
from cycles.ranker import RANKER_FEATURES, NextWindowRanker
from cycles.rfm import rfm_scores
from cycles.value import VALUE_COLUMNS, customer_value

__all__ = [
    "PurchaseCycleEstimator",
    "pair_occasions",
    "brand_volume",
    "observed_cells",
    "usual_products",
    "rfm_scores",
    "abc_classes",
    "BetaGeoModel",
    "GammaGammaModel",
    "discounted_clv",
    "group_clv",
    "lifecycle",
    "customer_value",
    "customer_profile",
    "PROFILE_COLUMNS",
    "VALUE_COLUMNS",
    "NextWindowRanker",
    "RANKER_FEATURES",
    "ProfileParams",
    "ValueParams",
]
