"""Conversation scripts as data: one input line per turn, plus what they must produce.

The same scripts drive every front end (console now; Slack and Telegram next): a rep types the
lines, the coach answers, and the expected phrases and stored values are the contract.

`INTAKE_EN` records a customer with two contacts and one competitor, using `tip`, `back` and
`skip` on the way, and qualifies a clear, imminent, valuable opportunity. `INTAKE_ZH` is the same
job typed by a Chinese rep in Chinese after `lang zh` (Chinese numbers and dates, choices by
Chinese label or number, text with `，` and `、`); with no known budget the verdict is 维持联系
(keep in touch).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

# --------------------------------------------------------------------------------------------
# English
# --------------------------------------------------------------------------------------------

INTAKE_EN: list[str] = [
    "intake",
    "Daqing Oilfield Company",
    "tip",                      # coaching tip for the industry question; the question stays open
    "oil",                      # a choice by (part of) its label
    "1",                        # a choice by number
    "12,000",
    "Oil and gas production",
    "3",
    "yes",
    "8000",
    "¥2.4m",
    "2",
    "Daqing, Heilongjiang",
    "163000",
    "skip",
    "2, 3, 5",
    "Procurement reports to the deputy GM; the union has a say on workwear.",
    # contact 1
    "Liu Qiang",
    "Head of procurement",
    "2",
    "procurement",
    "designer, evaluator",
    "mid",
    "owl",
    "2",
    "138 0000 0000",
    "Plays badminton; daughter sits the gaokao next year.",
    "yes",
    # contact 2
    "Zhao Min",
    "back",                     # back to the name, answered again
    "Zhao Min",
    "skip",
    "1",
    "1",
    "decision maker",
    "1",
    "tiger",
    "1",
    "skip",
    "skip",
    "no",
    # competition
    "yes",
    "Bosideng",
    "Supplied 2024 winter jackets",
    "skip",
    "skip",
    "Brand, price",
    "Late delivery last year",
    "no",
    # qualify (opened automatically, the customer is handed over)
    "2027 winter uniforms",
    "Down jackets and trousers",
    "1",
    "2027-03-31",
    "1.2万",
    "4",
    "y",
    "是",                       # any language's words work anywhere
]

INTAKE_EN_FIRST_QUESTION = "[1/24] What is the customer's name?"
INTAKE_EN_PHRASES: list[str] = [
    INTAKE_EN_FIRST_QUESTION,
    "Coach's tip",
    "[28/38] What is Zhao Min's job title?",
    "Summary — customer intake",
    "• Contact 2 · Name: Zhao Min",
    "• Competitor 1 · Name: Bosideng",
    "Summary — opportunity check",
    "• Budget: 12,000 CNY",
    "A clear, imminent, valuable opportunity",
]
INTAKE_EN_VERDICT = "A clear, imminent, valuable opportunity"

# What INTAKE_EN stores (option codes, not labels; None where the rep skipped).
INTAKE_EN_ACCOUNT: dict[str, Any] = {
    "name": "Daqing Oilfield Company",
    "industry": "oil_gas",
    "nature": "state_owned",
    "size_employees": 12000,
    "business": "Oil and gas production",
    "source_method": "referral",
    "last_purchase_qty": Decimal("8000"),
    "last_purchase_amount": Decimal("2400000"),
    "last_purchase_currency": "CNY",
    "last_purchase_satisfaction": 2,
    "address": "Daqing, Heilongjiang",
    "postcode": "163000",
    "website": None,
    "purchase_departments": ["procurement", "finance", "user_dept"],
    "org_notes": "Procurement reports to the deputy GM; the union has a say on workwear.",
}
INTAKE_EN_CONTACTS: list[dict[str, Any]] = [
    {
        "name": "Liu Qiang",
        "title": "Head of procurement",
        "level": "senior",
        "function": "procurement",
        "buying_roles": ["designer", "evaluator"],
        "insider_level": "mid",
        "comm_style": "owl",
        "relationship_stage": "date",
        "phone": "138 0000 0000",
        "personal_notes": "Plays badminton; daughter sits the gaokao next year.",
    },
    {
        "name": "Zhao Min",
        "title": None,
        "level": "executive",
        "function": "management",
        "buying_roles": ["decision_maker"],
        "insider_level": "none",
        "comm_style": "tiger",
        "relationship_stage": "acquaint",
        "phone": None,
        "personal_notes": None,
    },
]
INTAKE_EN_COMPETITORS: list[dict[str, Any]] = [
    {
        "competitor": "Bosideng",
        "history": "Supplied 2024 winter jackets",
        "rep_name": None,
        "rep_style": None,
        "strengths": "Brand, price",
        "weaknesses": "Late delivery last year",
    },
]
INTAKE_EN_OPPORTUNITY: dict[str, Any] = {
    "name": "2027 winter uniforms",
    "product": "Down jackets and trousers",
    "verdict": "opportunity",
    "verdict_reasons": [],
    "stage": "trust",
    "amount": Decimal("12000"),
    "currency": "CNY",
    "expected_close": date(2027, 3, 31),
}
INTAKE_EN_QUALIFICATION: dict[str, Any] = {
    "need": "yes",
    "budget": {"amount": "12000.00", "currency": "CNY"},
    "timetable": "2027-03-31",
    "can_win": 4,
    "worth": True,
    "strength": True,
}

# --------------------------------------------------------------------------------------------
# Chinese
# --------------------------------------------------------------------------------------------

INTAKE_ZH: list[str] = [
    "lang zh",
    "建档",
    "北京公交集团",
    "公交集团",                 # industry by Chinese label
    "1",                        # ownership by number
    "3.2万",
    "城市公共交通运营",
    "客户介绍法",
    "是",
    "1.2万",
    "¥360万",
    "2",
    "北京市丰台区莲花池西里29号",
    "100073",
    "跳过",
    "2、3、使用部门",            # multi-choice: numbers and a label, separated by 、
    "采购部向副总经理汇报，工会对工装有发言权。",
    # 联系人 1
    "王建国",
    "采购部部长",
    "部门负责人",
    "采购部",
    "决策者、评估者",
    "中级内线",
    "猫头鹰",
    "2",
    "139 1234 5678，微信 wjg_bj",
    "喜欢打乒乓球，儿子明年高考。",
    "是",
    # 联系人 2
    "李红",
    "提示",                     # tip (there is none for the title: the general one)
    "返回",                     # back to the name
    "李红",
    "跳过",
    "高层",
    "1",
    "1",
    "不是内线",
    "老虎",
    "认识",
    "跳过",
    "跳过",
    "否",
    # 竞争信息
    "对",
    "波司登",
    "2024年供应过冬季棉服",
    "跳过",
    "跳过",
    "品牌知名度高、价格低",
    "去年交货延迟",
    "否",
    # 判断机会
    "2027年冬季工装",
    "羽绒服、棉裤",
    "有明确需求",
    "下周五",
    "跳过",                     # no known budget -> keep in touch
    "3",
    "是",
    "对",
]

INTAKE_ZH_FIRST_QUESTION = "[1/24] 客户名称是什么？"
INTAKE_ZH_PHRASES: list[str] = [
    "语言：中文。",
    INTAKE_ZH_FIRST_QUESTION,
    "教练提示",
    "[27/38] 第 2 位联系人：姓名？",
    "✓ 已更新。",
    "小结——客户建档",
    "• 参与采购的部门: 采购部、财务部、使用部门",
    "• 联系人 1 · 采购角色: 决策者、评估者",
    "• 竞争对手 1 · 名称: 波司登",
    "小结——销售机会判断",
    "• 预算: —",
    "维持联系",
    "还不知道预算。",
]
INTAKE_ZH_VERDICT = "维持联系"

INTAKE_ZH_ACCOUNT: dict[str, Any] = {
    "name": "北京公交集团",
    "industry": "bus_transport",
    "nature": "state_owned",
    "size_employees": 32000,
    "business": "城市公共交通运营",
    "source_method": "referral",
    "last_purchase_qty": Decimal("12000"),
    "last_purchase_amount": Decimal("3600000"),
    "last_purchase_currency": "CNY",
    "last_purchase_satisfaction": 2,
    "address": "北京市丰台区莲花池西里29号",
    "postcode": "100073",
    "website": None,
    "purchase_departments": ["procurement", "finance", "user_dept"],
    "org_notes": "采购部向副总经理汇报，工会对工装有发言权。",
}
INTAKE_ZH_CONTACTS: list[dict[str, Any]] = [
    {
        "name": "王建国",
        "title": "采购部部长",
        "level": "senior",
        "function": "procurement",
        "buying_roles": ["decision_maker", "evaluator"],
        "insider_level": "mid",
        "comm_style": "owl",
        "relationship_stage": "date",
        "phone": "139 1234 5678，微信 wjg_bj",
        "personal_notes": "喜欢打乒乓球，儿子明年高考。",
    },
    {
        "name": "李红",
        "title": None,
        "level": "executive",
        "function": "management",
        "buying_roles": ["initiator"],
        "insider_level": "none",
        "comm_style": "tiger",
        "relationship_stage": "acquaint",
        "phone": None,
        "personal_notes": None,
    },
]
INTAKE_ZH_COMPETITORS: list[dict[str, Any]] = [
    {
        "competitor": "波司登",
        "history": "2024年供应过冬季棉服",
        "rep_name": None,
        "rep_style": None,
        "strengths": "品牌知名度高、价格低",
        "weaknesses": "去年交货延迟",
    },
]
# expected_close is "下周五" (the Friday of next week): it depends on the day the test runs.
INTAKE_ZH_OPPORTUNITY: dict[str, Any] = {
    "name": "2027年冬季工装",
    "product": "羽绒服、棉裤",
    "verdict": "keep_in_touch",
    "verdict_reasons": ["budget"],
    "stage": "keep_in_touch",
    "amount": None,
    "currency": None,
}
INTAKE_ZH_QUALIFICATION: dict[str, Any] = {
    "need": "yes",
    "budget": None,
    "can_win": 3,
    "worth": True,
    "strength": True,
}
