"""What an alert says, in English and Chinese: the quantity in words, the value and threshold with their unit,
and where — the watched asset's name, its street and district.

>>> from cim.iot.sensors import Sensor
>>> main = Sensor(id="gp-1", parent_id="pipe-7", quantity="gas_pressure", unit="kPa", asset_name="Lujiazui Rd main",
...               street="Lujiazui", district="Pudong", street_zh="陆家嘴街道", district_zh="浦东新区")
>>> en, zh = texts(main, "above", value=4.1, threshold=3.5)
>>> en
'Gas pressure 4.1 kPa above 3.5 kPa — Lujiazui Rd main, Lujiazui, Pudong'
>>> zh
'燃气压力 4.1 kPa 高于 3.5 kPa — Lujiazui Rd main, 陆家嘴街道, 浦东新区'
>>> lift = Sensor(id="ls-3", parent_id="lift-3", quantity="lift_status", asset_name="Lift 3 of Jinmao Tower",
...               street="Lujiazui", district="Pudong", street_zh="陆家嘴街道", district_zh="浦东新区")
>>> texts(lift, "status", status="fault")
('Lift fault — Lift 3 of Jinmao Tower, Lujiazui, Pudong', '电梯故障 — Lift 3 of Jinmao Tower, 陆家嘴街道, 浦东新区')
>>> texts(lift, "stale", threshold=900)[0]
'Lift: no reading for over 15 min — Lift 3 of Jinmao Tower, Lujiazui, Pudong'
"""

from __future__ import annotations

from cim.iot.sensors import Sensor

#: Quantities in words (English, Chinese); a quantity not listed is spelled from its name.
QUANTITY_WORDS: dict[str, tuple[str, str]] = {
    "gas_pressure": ("Gas pressure", "燃气压力"),
    "water_level": ("Water level", "积水水位"),
    "water_pressure": ("Water pressure", "供水压力"),
    "lift_status": ("Lift", "电梯"),
    "flow": ("Flow", "流量"),
    "temperature": ("Temperature", "温度"),
    "humidity": ("Humidity", "湿度"),
    "power": ("Power", "功率"),
    "energy": ("Energy", "电量"),
    "rainfall": ("Rainfall", "降雨量"),
    "tilt": ("Tilt", "倾斜"),
}
#: Statuses in Chinese; others are shown as sent.
STATUS_ZH: dict[str, str] = {
    "fault": "故障",
    "alarm": "报警",
    "offline": "离线",
    "maintenance": "检修",
    "stopped": "停运",
    "trapped": "困人",
}
_CONDITION_ZH = {"above": "高于", "below": "低于"}
#: Words for a watched asset without a name, by its kind: "main GAS-PD-0000218" rather than "pipes:GAS-PD-0000218".
KIND_WORDS: dict[str, tuple[str, str]] = {
    "pipe": ("main", "管道"),
    "node": ("chamber", "检查井"),
    "lift": ("lift", "电梯"),
    "building": ("building", "建筑"),
    "hydrant": ("hydrant", "消火栓"),
    "pole": ("pole", "灯杆"),
    "charger": ("charger", "充电桩"),
    "road": ("road", "道路"),
    "park": ("park", "公园"),
}


def quantity_words(quantity: str | None) -> tuple[str, str]:
    """(English, Chinese) words for a quantity."""
    if quantity is None:
        return "Value", "数值"
    if quantity in QUANTITY_WORDS:
        return QUANTITY_WORDS[quantity]
    spelled = quantity.replace("_", " ").capitalize()
    return spelled, spelled


def texts(
    sensor: Sensor,
    condition: str,
    *,
    value: float | None = None,
    threshold: float | None = None,
    status: str | None = None,
) -> tuple[str, str]:
    """(English, Chinese) text of an alert of ``condition`` (above, below, status, stale) raised by ``sensor``;
    ``value`` and ``threshold`` in the sensor's unit, ``threshold`` in seconds for stale."""
    en, zh = quantity_words(sensor.quantity)
    unit = f" {sensor.unit}" if sensor.unit else ""
    if condition in _CONDITION_ZH:
        what_en = f"{en} {_number(value)}{unit} {condition} {_number(threshold)}{unit}"
        what_zh = f"{zh} {_number(value)}{unit} {_CONDITION_ZH[condition]} {_number(threshold)}{unit}"
    elif condition == "status":
        shown = status or "?"
        what_en = f"{en} {shown}"
        what_zh = f"{zh}{STATUS_ZH.get(shown, ' ' + shown)}"
    else:
        what_en = f"{en}: no reading for over {_duration(threshold)}"
        what_zh = f"{zh} 超过 {_duration(threshold, _TIME_WORDS_ZH)} 无数据"
    asset_en, asset_zh = _asset_words(sensor)
    place_en = ", ".join(p for p in (asset_en, sensor.street, sensor.district) if p)
    place_zh = ", ".join(
        p for p in (asset_zh, sensor.street_zh or sensor.street, sensor.district_zh or sensor.district) if p
    )
    return f"{what_en} — {place_en}", f"{what_zh} — {place_zh}"


def _asset_words(sensor: Sensor) -> tuple[str, str]:
    """The watched asset as the text names it: its name, else its kind and id without the layer's prefix.

    >>> _asset_words(Sensor(id="s", parent_id="pipes:GAS-PD-0000218", parent_kind="pipe"))
    ('main GAS-PD-0000218', '管道 GAS-PD-0000218')
    """
    if sensor.asset_name:
        return sensor.asset_name, sensor.asset_name
    asset_id = sensor.parent_id or sensor.id
    short = asset_id.split(":", 1)[-1] or asset_id
    words = KIND_WORDS.get(sensor.parent_kind or "") if sensor.parent_id else None
    return (f"{words[0]} {short}", f"{words[1]} {short}") if words else (short, short)


def _number(value: float | None) -> str:
    """A value as people write it: no trailing zeros, six significant digits (no float noise)."""
    return "?" if value is None else f"{value:g}"


#: The words of an hour, a minute and a second, in English and in Chinese.
_TIME_WORDS_EN = ("h", "min", "s")
_TIME_WORDS_ZH = ("小时", "分钟", "秒")


def _duration(seconds: float | None, words: tuple[str, str, str] = _TIME_WORDS_EN) -> str:
    """A number of seconds in whole hours or minutes where it is one: "15 min", "2 h", "90 s"."""
    if seconds is None:
        return "?"
    hour, minute, second = words
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} {hour}"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} {minute}"
    return f"{seconds:g} {second}"
