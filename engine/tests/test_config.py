"""config.yaml validation: defaults, every error names its field, the plan's pair cap."""

from __future__ import annotations

import pytest
from quantmesh_engine.config import MANUAL_EXCHANGES, ConfigError, load_config, parse_config
from quantmesh_engine.exchanges.dialects import dialect_for


def test_defaults_trade_on_paper(tmp_path):
    config = load_config(tmp_path / "missing.yaml")
    assert config.is_paper
    assert config.symbols == ("BTC/USDT",)
    assert config.grid.price_interval > 0 and config.grid.max_layers >= 1


@pytest.mark.parametrize("name", MANUAL_EXCHANGES)
def test_every_exchange_of_the_manual_validates(name):
    exchange_id = parse_config({"exchange": {"name": name}, "grid": {"post_only": False}}).exchange_id
    assert exchange_id != "paper"
    if dialect_for(exchange_id).post_only:
        assert parse_config({"exchange": {"name": name}}).grid.post_only is True
    else:  # told, not silently downgraded to plain limit orders
        with pytest.raises(ConfigError) as caught:
            parse_config({"exchange": {"name": name}})
        assert caught.value.errors == [
            f"grid.post_only: {name} cannot place post-only orders; set grid.post_only: false to trade with plain "
            "limit orders (they may take liquidity and pay the taker fee)"
        ]


@pytest.mark.parametrize(
    "data, field",
    [
        ({"grid": {"price_interval": 0}}, "grid.price_interval: must be > 0"),
        ({"grid": {"price_interval": "wide"}}, "grid.price_interval: must be a number"),
        ({"grid": {"max_layers": 2.5}}, "grid.max_layers: must be an integer"),
        ({"grid": {"buy_window": 0}}, "grid.buy_window: must be >= 1"),
        ({"grid": {"spacing": 1}}, "grid.spacing: unknown field"),
        ({"exchange": {"name": "nosuchexchange"}}, "exchange.name: unknown exchange"),
        ({"symbols": ["BTCUSDT"]}, "symbols[0]: must look like 'BASE/QUOTE'"),
        ({"symbols": []}, "symbols: must be a non-empty list"),
        ({"risk": {"stop_loss_pct": 150}}, "risk.stop_loss_pct: must be <= 100"),
        ({"risk": {"rapid_decline": {"drop_pct": -1}}}, "risk.rapid_decline.drop_pct: must be > 0"),
        ({"paper": {"prices_csv": "../../etc/passwd"}}, "paper.prices_csv: must be the name of a file in the data"),
        ({"paper": {"prices_csv": "/proc/sys/kernel/pid_max"}}, "paper.prices_csv: must be the name of a file in"),
        ({"paper": {"prices_csv": "sub/prices.csv"}}, "paper.prices_csv: must be the name of a file in the data"),
        ({"paper": {"prices_csv": ".."}}, "paper.prices_csv: must be the name of a file in the data"),
        ({"paper": {"prices_csv": 5}}, "paper.prices_csv: must be the name of a file in the data"),
        ({"cancel_orders_on_stop": "yes"}, "cancel_orders_on_stop: must be true or false"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_errors_name_the_field(data, field):
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(error.startswith(field) for error in caught.value.errors), caught.value.errors


def test_post_only_is_refused_where_the_exchange_cannot_do_it():
    """An exchange whose dialect has no post-only (any exchange outside the checked table) is refused
    with post_only on, instead of silently sending plain limit orders."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"exchange": {"name": "coinbase"}})
    assert caught.value.errors[0].startswith("grid.post_only: coinbase cannot place post-only orders")
    assert parse_config({"exchange": {"name": "coinbase"}, "grid": {"post_only": False}}).grid.post_only is False


def test_all_errors_are_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        parse_config({"grid": {"price_interval": -1, "order_quote_size": 0}, "symbols": ["x"]})
    assert len(caught.value.errors) == 3


def test_plan_caps_trading_pairs():
    parse_config({"symbols": ["BTC/USDT"]}, max_trading_pairs=1)
    with pytest.raises(ConfigError) as caught:
        parse_config({"symbols": ["BTC/USDT", "ETH/USDT"]}, max_trading_pairs=1)
    assert "symbols: your plan allows 1 trading pair(s), this config has 2" in caught.value.errors[0]


def test_unlimited_pairs_when_no_cap():
    symbols = [f"C{i}/USDT" for i in range(20)]
    assert len(parse_config({"symbols": symbols}, max_trading_pairs=None).symbols) == 20


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("grid: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors[0].startswith("config.yaml: not valid YAML")


def test_trial_is_paper_only():
    parse_config({"exchange": {"name": "paper"}}, paper_only=True)
    with pytest.raises(ConfigError) as caught:
        parse_config({"exchange": {"name": "Binance"}}, paper_only=True)
    assert caught.value.errors[0].startswith("exchange.name: the free trial trades on the paper exchange only")
