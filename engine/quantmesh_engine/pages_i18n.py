"""The engine pages' words in Chinese (the portal's console speaks both; so do these pages).

The language comes from the `qm_language` cookie the portal's hand-over sets, else the browser's
Accept-Language. English is the source text; a missing entry shows English (tests check none is)."""

from __future__ import annotations

ZH = {
    "Post-only (maker) orders; some exchanges cannot place them": "只挂单（做市单）；部分交易所不支持",
    "Risk stops": "风控停止",
    "no risk stop is active": "当前没有生效的风控停止",
    "A stop-loss, the daily loss limit and a rapid-decline pause stay in force across restarts and config saves "
    "until cleared here.": "止损、每日亏损上限和急跌暂停在重启和保存配置后依然有效，直到您在此处解除。",
    "Clear risk stops and resume buying": "解除风控停止并恢复买入",
    "Status": "状态",
    "Configuration": "配置",
    "Back to the console": "返回控制台",
    "QuantMesh engine": "QuantMesh 引擎",
    "Trading": "交易中",
    "Paused by risk control": "风控暂停",
    "Not trading": "未在交易",
    "Starting": "启动中",
    "Stopped": "已停止",
    "Fix the configuration": "修正配置",
    "Exchange": "交易所",
    "Last tick": "最近心跳",
    "Price": "价格",
    "Position": "持仓",
    "Realised PnL": "已实现盈亏",
    "Unrealised PnL": "未实现盈亏",
    "Fees": "手续费",
    "Risk": "风控",
    "OK": "正常",
    "Open orders (grid levels)": "当前挂单（网格档位）",
    "Side": "方向",
    "Level": "档位",
    "Amount": "数量",
    "Recent trades": "最近成交",
    "Time": "时间",
    "PnL": "盈亏",
    "buy": "买入",
    "sell": "卖出",
    "None yet.": "暂无。",
    "This page shows the engine as it is now; the console shows charts and history.": (
        "本页显示引擎的当前状态；图表和历史记录请在控制台查看。"
    ),
    "Exchange (paper, binance, okx, bybit, …)": "交易所（paper、binance、okx、bybit 等）",
    "Testnet / sandbox": "测试网／沙盒",
    "API key": "API Key",
    "API secret": "API Secret",
    "Passphrase (OKX, KuCoin, Bitget)": "Passphrase（OKX、KuCoin、Bitget）",
    "Symbols, comma separated": "交易对（用逗号分隔）",
    " (your plan: at most {pairs})": "（您的套餐最多 {pairs} 个）",
    ": ": "：",
    "Grid price interval": "网格价格间隔",
    "Order size (quote currency)": "每单金额（计价货币）",
    "Buy window (levels)": "买单窗口（档数）",
    "Sell window (levels)": "卖单窗口（档数）",
    "Maximum grid layers": "最大网格层数",
    "Stop-loss % (empty: off)": "止损百分比（留空即关闭）",
    "Daily loss limit (empty: off)": "每日亏损上限（留空即关闭）",
    "Maximum position value (empty: off)": "最大持仓价值（留空即关闭）",
    "Save and restart": "保存并重启",
    "Give the key trading rights only, never withdrawals.": "请只给密钥交易权限，切勿开启提现权限。",
    # The strategy card (issue 22).
    "Strategy": "策略",
    "Fixed grid": "固定网格",
    "Interval": "网格间距",
    "Adaptive strategy · AI-tuned": "自适应策略 · AI 调优",
    "Volatility": "波动率",
    "Inventory skew": "库存偏移",
    "levels lower for buys": "档（买单下移）",
    "Last change": "最近调整",
    "none yet": "尚无",
    "Why": "原因",
    "The interval follows the market's measured volatility and never falls below what a round trip pays in "
    "fees; while it holds inventory the grid buys lower. Changes are limited to one per re-centring period.": (
        "网格间距随实测波动率调整，且绝不低于一次买卖往返所付的手续费；持有库存时，网格在更低的价格买入。"
        "每个再居中周期内最多调整一次。"
    ),
    # The strategy on the config page, and a plan without the adaptive strategy (issue 22).
    "adaptive strategy not included in the plan: trading the fixed grid": "套餐不包含自适应策略：按固定网格交易",
    "Not included in your plan: upgrade to a plan with AI strategy to use it.": (
        "您的套餐不包含此功能：升级到包含 AI 策略的套餐即可使用。"
    ),
    "The parameters below apply to the adaptive strategy only; the grid fields above give its order size, "
    "windows, layers and starting interval.": (
        "以下参数仅用于自适应策略；上方的网格字段决定它的每单金额、买卖窗口、层数和初始间距。"
    ),
    "Spread (× volatility over the horizon)": "价差倍数（× 预测周期内的波动）",
    "The interval is this many times the price's expected move over the horizon.": (
        "网格间距为价格在预测周期内预期波动的这一倍数。"
    ),
    "Horizon (seconds)": "预测周期（秒）",
    "The period whose expected price move sets the interval.": "以该周期内的预期价格波动来确定网格间距。",
    "Volatility half-life (seconds)": "波动率半衰期（秒）",
    "How fast the volatility estimate forgets old prices (an EWMA of squared log returns).": (
        "波动率估计遗忘旧价格的快慢（对数收益平方的指数加权移动平均）。"
    ),
    "Maximum interval (% of the price)": "最大间距（占价格的 %）",
    "The interval never exceeds this share of the price.": "网格间距绝不超过价格的这一比例。",
    "Skew per held layer (levels)": "每持有一层的偏移（档）",
    "How many levels lower the buys step for each layer held.": "每持有一层，买单下移的档数。",
    "Maximum skew (levels)": "最大偏移（档）",
    "The buys never sit more than this many levels lower: your bound on the inventory skew.": (
        "买单最多下移这么多档：这是您为库存偏移设定的上限。"
    ),
    "Minimum time between re-centrings (seconds)": "两次再居中的最短间隔（秒）",
    "At most one change of interval this often, so orders are not churned (falling under the fee floor "
    "re-centres at once).": "在此时间内最多调整一次间距，避免频繁撤单（低于手续费底线时立即调整）。",
    "Minimum change to re-centre (%)": "触发再居中的最小变化（%）",
    "Re-centre only when the wanted interval differs from the current one by at least this much.": (
        "只有目标间距与当前间距相差至少这一比例时才再居中。"
    ),
}


def language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in ("zh-hans", "en"):
        return "zh" if cookie == "zh-hans" else "en"
    return "zh" if (accept_language or "").lower().lstrip().startswith("zh") else "en"


def translate(text: str, lang: str) -> str:
    return ZH.get(text, text) if lang == "zh" else text
