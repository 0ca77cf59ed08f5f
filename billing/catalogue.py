"""The plan catalogue as the manual sells it (套餐): the single source the Plan rows are loaded from.

Yearly billing is discounted (the manual: 使用年付享受折扣): a year costs ten months, two months free.
`None` in a limit means unlimited.
"""

from __future__ import annotations

YEARLY_MONTHS_CHARGED = 10

PLAN_CATALOGUE: list[dict] = [
    {
        "code": "personal",
        "name": "Personal",
        "name_zh": "个人版",
        "tier": 1,
        "price_monthly_cents": 4900,
        "cpu_limit": "1.0",
        "memory_limit_mb": 1024,
        "pids_limit": 256,
        "max_trading_pairs": 1,
        "max_instances": 1,
        "features": [],
        "audience": "Individual traders",
        "audience_zh": "个人交易者",
    },
    {
        "code": "professional",
        "name": "Professional",
        "name_zh": "专业版",
        "tier": 2,
        "price_monthly_cents": 19900,
        "cpu_limit": "2.0",
        "memory_limit_mb": 2048,
        "pids_limit": 512,
        "max_trading_pairs": 5,
        "max_instances": 3,
        "features": ["ai_strategy", "custom_domain"],
        "audience": "Professional traders",
        "audience_zh": "专业交易者",
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "name_zh": "企业版",
        "tier": 3,
        "price_monthly_cents": 99900,
        "cpu_limit": "4.0",
        "memory_limit_mb": 8192,
        "pids_limit": 1024,
        "max_trading_pairs": None,
        "max_instances": None,
        "features": ["ai_strategy", "custom_domain", "autoscaling", "priority_support"],
        "audience": "Institutions and teams",
        "audience_zh": "机构、团队",
    },
]


def yearly_price_cents(monthly_cents: int) -> int:
    return monthly_cents * YEARLY_MONTHS_CHARGED
