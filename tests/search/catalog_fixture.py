"""A small English + Chinese + mixed catalogue written for the search tests."""

from __future__ import annotations

import pandas as pd

# (title, brand, category, price, in_stock)
PRODUCTS: list[tuple[str, str, str, float, bool]] = [
    ("DeWalt 20V MAX Cordless Drill Driver Kit", "DeWalt", "Tools > Drills", 129.0, True),
    ("Ryobi 18V ONE+ Cordless Drill with Battery", "Ryobi", "Tools > Drills", 79.0, False),
    ("Makita 18V LXT Cordless Impact Driver", "Makita", "Tools > Drivers", 149.0, True),
    ("Bosch Corded Hammer Drill 7.5 Amp", "Bosch", "Tools > Drills", 99.0, True),
    ("Milwaukee M18 Fuel Brushless Circular Saw", "Milwaukee", "Tools > Saws", 229.0, True),
    ("Gilmour 50 ft. Heavy Duty Garden Hose", "Gilmour", "Garden > Hoses", 35.0, True),
    ("Orbit Oscillating Lawn Sprinkler", "Orbit", "Garden > Watering", 15.0, True),
    ("Kohler Round Closed Front Toilet Seat in White", "Kohler", "Bath > Toilets", 42.0, True),
    ("American Standard Elongated Toilet Seat Bone", "American Standard", "Bath > Toilets", 38.0, False),
    ("Simpson Strong-Tie 12-Gauge Angle Bracket", "Simpson", "Hardware > Brackets", 3.5, True),
    ("BEHR Premium Exterior Wood Stain Cedar 1 gal.", "BEHR", "Paint > Stain", 39.0, True),
    ("Glacier Bay Chrome Bathroom Faucet Single Handle", "Glacier Bay", "Bath > Faucets", 59.0, True),
    ("Rheem 40 Gal. Electric Water Heater", "Rheem", "Plumbing > Water Heaters", 499.0, True),
    ("Philips LED Light Bulb 60W Equivalent Soft White 4-Pack", "Philips", "Lighting > Bulbs", 9.9, True),
    ("Honeywell Programmable Thermostat", "Honeywell", "Heating > Thermostats", 45.0, True),
    ("Samsung 65 inch 4K UHD Smart TV", "Samsung", "Electronics > TVs", 599.0, True),
    ("Apple iPhone 15 Pro 256GB Smartphone", "Apple", "Electronics > Phones", 1099.0, True),
    ("Sony WH-1000XM5 Wireless Noise Cancelling Headphones", "Sony", "Electronics > Audio", 399.0, True),
    ("Logitech MX Master 3S Wireless Mouse", "Logitech", "Electronics > Accessories", 99.0, True),
    ("Nike Air Max Running Shoes Men", "Nike", "Shoes > Running", 130.0, True),
    # Chinese and mixed Chinese/English
    ("华为 Mate 60 Pro 手机 12GB+512GB", "华为", "数码 > 手机", 6999.0, True),
    ("小米 14 Ultra 智能手机 16GB+1TB 黑色", "小米", "数码 > 手机", 6499.0, True),
    ("苹果 iPhone 15 手机 128GB 蓝色", "苹果", "数码 > 手机", 5999.0, True),
    ("小米空气净化器 4 Pro 除甲醛", "小米", "家电 > 空气净化器", 1299.0, True),
    ("飞利浦 空气净化器 家用 除雾霾", "飞利浦", "家电 > 空气净化器", 1599.0, False),
    ("耐克 Air Max 跑步鞋 男款 气垫", "耐克", "运动 > 跑步鞋", 899.0, True),
    ("阿迪达斯 Ultraboost 女子跑步鞋", "阿迪达斯", "运动 > 跑步鞋", 1099.0, True),
    ("美的 变频空调 1.5匹 冷暖 挂机", "美的", "家电 > 空调", 2799.0, True),
    ("格力 空调 大1匹 一级能效 壁挂式", "格力", "家电 > 空调", 2999.0, True),
    ("海尔 冰箱 双开门 风冷无霜 500升", "海尔", "家电 > 冰箱", 3999.0, True),
    ("西门子 滚筒洗衣机 10公斤 全自动", "西门子", "家电 > 洗衣机", 3599.0, True),
    ("戴森 V12 无线吸尘器 手持", "戴森", "家电 > 吸尘器", 4490.0, True),
    ("索尼 WH-1000XM5 无线降噪耳机 头戴式", "索尼", "数码 > 耳机", 2499.0, True),
    ("罗技 MX Master 3S 无线鼠标 办公", "罗技", "数码 > 配件", 699.0, True),
    ("联想 ThinkPad X1 笔记本电脑 14英寸", "联想", "电脑 > 笔记本", 9999.0, True),
    ("九阳 电饭煲 4L 智能预约", "九阳", "厨房 > 电饭煲", 299.0, True),
    ("苏泊尔 不粘锅 炒锅 32cm", "苏泊尔", "厨房 > 锅具", 199.0, True),
    ("三只松鼠 坚果礼盒 每日坚果", "三只松鼠", "食品 > 坚果", 129.0, True),
    ("农夫山泉 矿泉水 550ml 24瓶", "农夫山泉", "食品 > 饮用水", 39.0, True),
    ("李宁 羽毛球拍 全碳素 单拍", "李宁", "运动 > 羽毛球", 399.0, True),
    ("得力 订书机 办公用品", "得力", "办公 > 文具", 25.0, True),
    ("乐高 积木 城市系列 警察局", "乐高", "玩具 > 积木", 799.0, True),
]


def items_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"p{i:02d}" for i in range(len(PRODUCTS))],
            "title": [p[0] for p in PRODUCTS],
            "brand": [p[1] for p in PRODUCTS],
            "category": [p[2] for p in PRODUCTS],
            "price": [p[3] for p in PRODUCTS],
            "in_stock": [p[4] for p in PRODUCTS],
        }
    )


def item_id(title_prefix: str) -> str:
    for i, p in enumerate(PRODUCTS):
        if p[0].startswith(title_prefix):
            return f"p{i:02d}"
    raise KeyError(title_prefix)
