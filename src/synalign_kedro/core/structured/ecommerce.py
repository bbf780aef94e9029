"""The paper's e-commerce benchmark (LLMSYNTHOR.md §3, [ICLR] App. A.1): the Bayesian-network
data-generating process, its derived labels and the plausibility rules R1-R3 ([KDD])."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import truncnorm

from .variables import VariableSet, load_variables

CATEGORIES = ["Electronics", "Apparel", "Food & Beverages", "Furniture & Appliances"]
PAYMENTS = ["Online Payment", "Cash on Delivery"]
GENDERS = ["Male", "Female"]
TIERS = ["Developed", "Developing"]

AGE_WEIGHTS = np.array([0.5, 0.45, 0.15]) / 1.10  # the paper's weights sum to 1.10: normalised [choice, §3.1]
AGE_MEANS = np.array([24.0, 38.0, 55.0])
AGE_SDS = np.array([6.0, 15.0, 10.0])
CATEGORY_GIVEN_GROUP_GENDER = {  # Table 4 [ICLR]: p(v_C | age group, gender)
    ("young", "Male"): [0.50, 0.25, 0.05, 0.20],
    ("young", "Female"): [0.20, 0.50, 0.05, 0.25],
    ("middle", "Male"): [0.20, 0.10, 0.50, 0.20],
    ("middle", "Female"): [0.10, 0.20, 0.55, 0.15],
    ("old", "Male"): [0.10, 0.10, 0.65, 0.15],
    ("old", "Female"): [0.10, 0.10, 0.60, 0.20],
}
PRICE_PARAMS = {  # (μ_c, φ_c), truncated to [0, 2000]
    "Electronics": (800.0, 1000.0),
    "Apparel": (100.0, 500.0),
    "Food & Beverages": (100.0, 400.0),
    "Furniture & Appliances": (200.0, 500.0),
}
PAYMENT_GIVEN_TIER = {"Developed": [0.70, 0.30], "Developing": [0.40, 0.60]}

VARIABLES = load_variables(
    [
        {"name": "user_age", "type": "numeric", "description": "age of the buyer in years", "range": [18, 90]},
        {"name": "user_gender", "type": "categorical", "description": "gender of the buyer", "categories": GENDERS},
        {"name": "location_tier", "type": "categorical", "description": "development tier of the buyer's city", "categories": TIERS},
        {"name": "product_category", "type": "categorical", "description": "category of the product bought", "categories": CATEGORIES},
        {"name": "price", "type": "numeric", "description": "price paid", "range": [0, 2000]},
        {"name": "payment_method", "type": "categorical", "description": "how the buyer paid", "categories": PAYMENTS},
    ]
)
# the joint tables the BN implies ([KDD], inferred from Table 2): [A,G,C], [C,X], [L,M]
BN_GROUPS = [["user_age", "user_gender", "product_category"], ["product_category", "price"], ["location_tier", "payment_method"]]
EVAL_GROUPS = {
    "age_gender_category": ("user_age", "user_gender", "product_category"),
    "category_price": ("product_category", "price"),
    "location_payment": ("location_tier", "payment_method"),
}


def variables() -> VariableSet:
    return VARIABLES


def generate(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``n`` i.i.d. records of the BN p(A)p(G)p(L)p(C|A,G)p(X|C)p(M|L) (§3).

    Age: the normalised three-Gaussian mixture, rejection-sampled into [18, 90] (the whole mixture truncated,
    Eq. (1) [choice §3.1]); price: N(μ_c, φ_c²) truncated to [0, 2000].
    """
    rng = np.random.default_rng(seed)
    ages = np.empty(0)
    while len(ages) < n:
        component = rng.choice(3, size=2 * n, p=AGE_WEIGHTS)
        draw = rng.normal(AGE_MEANS[component], AGE_SDS[component])
        ages = np.concatenate([ages, draw[(draw >= 18) & (draw <= 90)]])
    ages = ages[:n]
    gender = rng.choice(GENDERS, size=n, p=[0.45, 0.55])
    tier = rng.choice(TIERS, size=n, p=[0.4, 0.6])
    group = np.where(ages < 35, "young", np.where(ages < 55, "middle", "old"))
    category = np.array([rng.choice(CATEGORIES, p=CATEGORY_GIVEN_GROUP_GENDER[(g, s)]) for g, s in zip(group, gender, strict=True)])
    price = np.empty(n)
    for c, (mu, sd) in PRICE_PARAMS.items():
        mask = category == c
        a, b = (0 - mu) / sd, (2000 - mu) / sd
        price[mask] = truncnorm.rvs(a, b, loc=mu, scale=sd, size=int(mask.sum()), random_state=rng)
    payment = np.array([rng.choice(PAYMENTS, p=PAYMENT_GIVEN_TIER[t]) for t in tier])
    return pd.DataFrame(
        {"user_age": ages, "user_gender": gender, "location_tier": tier, "product_category": category, "price": price, "payment_method": payment}
    )


def derived_labels(records: pd.DataFrame) -> pd.DataFrame:
    """discount_propensity and lifetime_value_band (§3 "Derived labels"), computed the same way on any table.

    z uses the DGP's (μ_c, φ_c) [choice]; the log is natural [choice]. S < −1 cannot happen (§6.11), so the
    discount label is effectively Mid/High.
    """
    mu = records["product_category"].map({c: p[0] for c, p in PRICE_PARAMS.items()}).to_numpy(float)
    sd = records["product_category"].map({c: p[1] for c, p in PRICE_PARAMS.items()}).to_numpy(float)
    age = records["user_age"].to_numpy(float)
    price = records["price"].to_numpy(float)
    cod = (records["payment_method"] == "Cash on Delivery").to_numpy()
    developing = (records["location_tier"] == "Developing").to_numpy()
    score = -np.tanh((price - mu) / sd) + 0.01 * (age - 35) ** 2 / 100 + 0.5 * cod + 0.3 * developing
    discount = np.where(score > 1, "High", np.where(score < -1, "Low", "Mid"))
    w_m = np.where(cod, 0.85, 1.2)
    w_c = records["product_category"].map(
        {"Electronics": 1.3, "Apparel": 1.1, "Food & Beverages": 0.9, "Furniture & Appliances": 1.4}
    ).to_numpy(float)
    ltv0 = np.sqrt(np.clip(price, 0, None)) * w_m / (np.log1p(np.abs(age - 35)) + 1) * w_c
    ltv = np.where(ltv0 > 20, "High", np.where(ltv0 < 10, "Low", "Mid"))
    return pd.DataFrame({"discount_propensity": discount, "lifetime_value_band": ltv})


# R1-R3 with the spec's thresholds [choice, §3]; pandas query strings so any table's rules can be given the same way
RULES = {
    "R1_low_price_big_ticket": "product_category in ['Electronics', 'Furniture & Appliances'] and price < 5",
    "R2_teen_high_food_spend": "user_age <= 19 and product_category == 'Food & Beverages' and price > 1500",
    "R3_senior_ultra_electronics": "user_age >= 85 and product_category == 'Electronics' and price > 1900",
}
