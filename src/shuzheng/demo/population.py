"""Deterministic demo data for the data-load pipeline: Dingzhou's household register (定州市户籍人口基本信息)
and its enterprise register (企业登记基本信息), with faults injected at known rates.

    stream = people_batches(1_000_000, seed=2026, faults=0.03)
    write_csv("people.csv", stream, encoding="gbk")   # streams; memory stays bounded
    stream.fault_counts                               # {"bad_check": 6061, "missing_name": 4544, ...}

For speed, ask the generator for the file's encoding: ``people_batches(..., encoding="gbk")`` builds the
text directly in GBK (binary columns, marked in the schema metadata) and ``write_csv`` then writes it
without transcoding; the file is byte for byte the same as from the UTF-8 batches.

How it is made
--------------
Rows are generated in fixed blocks of ``BLOCK`` rows. Block k draws its random numbers from its own stream,
``SeedSequence(seed, spawn_key=(table, k, 0))`` for the data and ``(table, k, 1)`` for the faults, always in
the same amounts, so the output depends only on (n, seed, faults): ``batch_size`` only cuts the same rows
into different batches, the first m rows of n are the m rows asked for alone, and the clean values of a row
do not depend on ``faults`` (a fault changes the row it hits and nothing else). Everything is vectorised over
a block with numpy and pyarrow.compute; the only Python loops are over blocks and over the few faulty rows
that need string surgery (``bad_reg_date``, ``mojibake``, ``bad_capital``: about faults x share of the rows).
Memory is a few blocks whatever n is.

The people table (``PEOPLE_COLUMNS``, 14 string columns)
  - households of 1-6 people (mean about 2.9) drawn from templates (a couple, a couple and children,
    three generations, a widowed parent living with a son, left-behind grandchildren...), sharing 户号,
    户籍地址 and 所属派出所, with 与户主关系 one of ``RELATIONS`` and ages, sexes and surnames that fit the
    relation (spouses opposite sex and about the same age, children 22-35 years younger and carrying the
    family surname, in-laws with their own surname); a one-person household is a 集体户 (户口类别 20) in
    about 15% of cases, otherwise 家庭户 (10).
  - 公民身份号码: GB 11643 with the real birth date, a sequence number whose last digit is odd for men and
    even for women (GB/T 2261.1 性别 1/2) and the MOD 11-2 check character. The region is Dingzhou's code
    when the number was given, as python-stdnum checks it: 130682 for people born since 1994, 132401
    (定州市 under 保定地区) for 1986-1993 and 132439 (定县) before (``ID_REGIONS_BEFORE``; set it to () for
    130682 throughout). Sequence numbers come from a counter per (birth date, sex) that lives across
    blocks, so valid numbers never repeat (a birth date whose 500 numbers are used up moves the person to
    the next day with numbers left); hence ``MAX_PEOPLE``.
  - 出生日期 YYYY-MM-DD, 1930-01-01 to 2025-12-31 (``AS_OF``), ages from the household templates, which
    gives a broad Chinese-looking pyramid (bulges at 25-55, fewer children, few over 80).
  - 民族 GB/T 3304: 汉族 (01) for about 99% of the city, 回族 (03) for more than half of 号头庄回族乡, a few
    满族, 蒙古族, 壮族, 朝鲜族, 苗族, 土家族; households share it except the people who married in.
  - 户籍地址 河北省定州市<乡镇街道><村/路>N号 (the villages in regions.json plus made-up but stable village names
    for the other towns; street addresses, some with building, unit and room, in the four 街道), 现住址 the
    same for most, an apartment in town or an address in another city for the rest.
  - 户号: the town's 3 digits and a 7-digit counter per town. 婚姻状况 GB/T 2261.2, 学历 GB/T 4658 (by age
    and birth cohort; 90 其他 before school age), 户籍登记日期 (after birth, 1958-1960 for people born before
    the 1958 register; on marriage for spouses) written YYYY-MM-DD (80%), YYYYMMDD (12%) or YYYY/M/D (8%),
    所属派出所 定州市公安局<town>派出所.

The enterprise table (``ENTERPRISE_COLUMNS``, 12 string columns)
  统一社会信用代码 GB 32100 (91 企业 86%, 92 个体工商户 9%, 93 农民专业合作社 5%; region 130682; an "MA"
  organization code for those registered since 2015-10-01, an 8-digit one before; GB 11714 and MOD 31 check
  characters; all unique), names 定州市<字号><行业>有限公司 / 定州市<镇><字号><店> / ...专业合作社 (not
  unique), 企业类型, 法定代表人姓名, 注册资本 in 万元 ("100", "128.50"), 成立日期 1984-2025 (mostly recent),
  住所, 经营范围, 登记机关 定州市市场监督管理局, 经营状态 DZ_BUSINESS_STATUS 1-6, 营业期限至 (empty = 长期),
  核准日期 (between 成立日期 and ``AS_OF``). Dates are YYYY-MM-DD.

Faults
------
Each row is faulty with probability ``faults`` and then of one kind only, drawn with the shares in
``PEOPLE_FAULT_SHARES`` / ``ENTERPRISE_FAULT_SHARES`` (so ``faults=0.03`` makes about 3% faulty rows, 0.6% of
each people kind at share 0.2). ``faults=0`` gives a clean table. People:

  bad_check       公民身份号码 with a wrong check character (everything else right)
  missing_name    姓名 empty (null)
  duplicate       the row is an exact copy of an earlier clean row of the same block (a person twice); a
                  rare duplicate with no clean row among its 8 candidates stays clean, so this kind comes
                  out a little under its share
  birth_mismatch  出生日期 1-400 days off the date in the ID number (still a real date)
  bad_reg_date    户籍登记日期 unparseable: 2019-02-30, 2019-02-31, 2019-04-31, 2019-13-05, 2019-06-00,
                  0000-00-00, 2019年6月, 不详
  mojibake        姓名 or 户籍地址 damaged: its UTF-8 bytes read as GBK (张伟 -> 寮犱紵), a character replaced
                  by 锟斤拷 (two U+FFFD read as GBK), or a character replaced by U+FFFD

Enterprises: bad_check (统一社会信用代码), missing_name (单位名称), duplicate, bad_capital (注册资本 not a
number: 50万元, 50万人民币, 壹佰万元, 不详, --, 约50), future_founded (成立日期 400-3650 days after ``AS_OF``).

U+FFFD has no GBK code: text is encoded with errors="replace", so in a GBK file (or GBK batches) it reads
"?" (张? for 张\ufffd); in UTF-8 or GB 18030 it stays U+FFFD. It appears only in mojibake rows (the
U+FFFD variant, and a UTF-8-read-as-GBK string whose last byte is left over). Everything else generated is
GBK-encodable, so a clean table encodes strictly.

``stream.fault_counts`` (complete once the stream is exhausted) says how many rows of each kind were made;
``label_faults=True`` adds a ``_fault`` column (the kind, or null) to check a rule set against.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

PEOPLE_COLUMNS = ("公民身份号码", "姓名", "性别", "民族", "出生日期", "户籍地址", "现住址", "户号", "与户主关系",
                  "婚姻状况", "学历", "户口类别", "户籍登记日期", "所属派出所")
ENTERPRISE_COLUMNS = ("统一社会信用代码", "单位名称", "企业类型", "法定代表人姓名", "注册资本", "成立日期", "住所",
                      "经营范围", "登记机关", "经营状态", "营业期限至", "核准日期")
FAULT_COLUMN = "_fault"

PEOPLE_FAULT_SHARES = {"bad_check": 0.20, "missing_name": 0.15, "duplicate": 0.20, "birth_mismatch": 0.15,
                       "bad_reg_date": 0.15, "mojibake": 0.15}
ENTERPRISE_FAULT_SHARES = {"bad_check": 0.25, "missing_name": 0.20, "duplicate": 0.20, "bad_capital": 0.20,
                           "future_founded": 0.15}
FAULT_LABELS = {"bad_check": "校验位错误", "missing_name": "名称缺失", "duplicate": "重复记录",
                "birth_mismatch": "出生日期与身份号码不符", "bad_reg_date": "登记日期无法解析", "mojibake": "乱码",
                "bad_capital": "注册资本非数值", "future_founded": "成立日期晚于当前"}

REGION = "130682"
# The region in an ID number is where the number was first given and never changes afterwards. Dingzhou was
# 定县 (132439) until 1986 and 定州市 under 保定地区 (132401) until 1994, when it became 130682; python-stdnum
# checks the region against the birth year the same way. (year, code): people born before `year` have `code`.
ID_REGIONS_BEFORE = ((1986, "132439"), (1994, "132401"))
ID_REGIONS = (REGION,) + tuple(code for _, code in ID_REGIONS_BEFORE)
AS_OF = _dt.date(2025, 12, 31)  # the day the demo register was "extracted"; no date in clean data is later
BLOCK = 100_000  # rows per random block: fixed, so batch_size never changes the data
MAX_PEOPLE = 30_000_000  # about 35,000 birth dates x 999 sequence numbers, with room for the age pyramid
MAX_ENTERPRISES = 50_000_000  # distinct pre-2015 organization codes

_EPOCH = _dt.date(1970, 1, 1)


def _day(d: _dt.date) -> int:
    return (d - _EPOCH).days


DAY_MIN, DAY_MAX = _day(_dt.date(1930, 1, 1)), _day(AS_OF)
_DAY_1958, _DAY_1961 = _day(_dt.date(1958, 1, 1)), _day(_dt.date(1961, 1, 1))

# ----------------------------------------------------------------------------------------------------
# Reference data
# ----------------------------------------------------------------------------------------------------

RELATIONS = ("户主", "配偶", "子", "女", "儿媳", "孙子", "孙女", "父亲", "母亲")
ETHNIC_CODES = ("01", "03", "11", "02", "08", "10", "06", "15")  # 汉 回 满 蒙古 壮 朝鲜 苗 土家 (GB/T 3304)
_ETHNIC_P = (0.9925, 0.0040, 0.0015, 0.0005, 0.0004, 0.0003, 0.0004, 0.0004)
_ETHNIC_P_HUI = (0.42, 0.58, 0, 0, 0, 0, 0, 0)  # 号头庄回族乡
MARITAL_CODES = ("10", "20", "21", "22", "23", "30", "40", "90")  # GB/T 2261.2
EDUCATION_CODES = ("10", "20", "30", "40", "60", "70", "80", "90")  # GB/T 4658
HOUSEHOLD_TYPES = ("10", "20")  # 家庭户, 集体户
BUSINESS_STATUS = ("1", "2", "3", "4", "5", "6")  # DZ_BUSINESS_STATUS: 存续 在业 吊销 注销 迁出 停业
_BUSINESS_STATUS_P = (0.70, 0.10, 0.06, 0.12, 0.01, 0.01)
REGISTRATION_AUTHORITY = "定州市市场监督管理局"

# Common surnames with rough weights (national frequency, leaning to North China).
_SURNAMES = (
    "王 9 李 8 张 8.5 刘 6 陈 3.5 杨 3.5 赵 3.2 黄 1.5 周 1.8 吴 1.6 徐 1.4 孙 1.8 马 1.6 朱 1.2 胡 1.1 郭 1.8 何 0.9 "
    "林 0.7 高 1.5 罗 0.6 郑 0.8 梁 0.8 谢 0.6 宋 0.9 唐 0.6 许 0.8 韩 1.0 邓 0.5 冯 0.9 曹 0.7 彭 0.4 曾 0.3 肖 0.4 "
    "田 0.8 董 0.8 潘 0.4 袁 0.5 蔡 0.4 蒋 0.4 余 0.3 于 0.7 杜 0.6 叶 0.4 程 0.5 魏 0.7 苏 0.5 吕 0.5 丁 0.5 任 0.6 "
    "卢 0.4 姚 0.4 沈 0.3 钟 0.2 姜 0.5 崔 0.7 谭 0.2 陆 0.3 范 0.5 汪 0.2 廖 0.2 石 0.5 金 0.3 贾 0.6 夏 0.3 付 0.4 "
    "方 0.3 邹 0.2 白 0.5 孟 0.8 秦 0.4 邱 0.2 侯 0.5 江 0.2 尹 0.3 薛 0.4 闫 0.5 段 0.4 雷 0.2 史 0.5 陶 0.2 贺 0.3 "
    "毛 0.2 郝 0.6 顾 0.2 邵 0.3 武 0.6 钱 0.2 戴 0.2 严 0.2 孔 0.3 常 0.4 耿 0.3 齐 0.3 甄 0.2 边 0.2 牛 0.3 "
    "欧阳 0.03 司马 0.02 上官 0.01")
_HUI_SURNAMES = "马 35 白 8 刘 6 张 6 杨 6 王 6 李 5 金 4 沙 3 哈 3 米 3 丁 3 穆 3 海 2 冯 2 安 2 纳 1 洪 1"
_MALE_OLD = "国建军华明文志春海永德学忠福庆贵祥林成平东保金山宝立刚振树广喜占增兴连生胜俊新勇义"
_MALE_NEW = "浩宇轩子博涛磊鹏杰晨辰睿泽铭航一天俊凯昊鑫阳帅超伟强旭飞嘉恒瑞哲奕逸然皓梓宸诚"
_FEMALE_OLD = "秀英桂兰玉珍凤芳淑荣丽霞华梅琴云素莲爱翠红敏香娥彩月春金燕萍"
_FEMALE_NEW = "欣怡子涵雨梓萱诗佳琪悦婷静雪颖晨思可馨妍雅琳瑶璐晓丹倩蕾心若"
_VILLAGE_HEADS = "东西南北大小前后中"
_VILLAGE_CORES = "王张李刘赵杨陈马孟高周吴郭许韩冯崔田董宋魏贾史郝牛耿"
_VILLAGE_TAILS = ("庄村", "村", "家庄村", "疃村", "营村", "辛庄村", "屯村")
_ROADS = ("中山东路", "中山中路", "中山西路", "兴华东路", "兴华西路", "长安路", "建设路", "胜利路", "朝阳街", "清风街",
          "刀枪街", "南关街", "北大街", "东大街", "西大街", "平安街", "开元路", "定曲路", "博物馆路", "车站路")
_ESTATES = ("中山家园", "兴华苑", "开元小区", "御景城", "华府名苑", "定州明珠", "阳光新城", "博雅园", "金地花园", "锦绣华庭",
            "中山花园", "世纪城", "恒大名都", "东方家园", "翠园小区", "龙湾新城")
_OTHER_CITIES = ("北京市丰台区", "北京市大兴区", "北京市朝阳区", "天津市西青区", "河北省石家庄市长安区", "河北省石家庄市裕华区",
                 "河北省保定市竞秀区", "河北省保定市莲池区", "河北省雄安新区容城县", "山东省济南市历下区")
_CITY_ROADS = ("建设路", "人民路", "解放路", "和平路", "新华路", "东风路", "育才路", "光明路", "幸福路", "朝阳路")
_TRADE_CHARS = "鑫源恒通华强宏达金泰瑞丰盛祥隆昌兴旺永安福顺利德诚信万和嘉泽博远新宇天润汇聚鼎益佳美康辉腾龙凯晟弘正中合众创启明立宁东方航峰森林海云广茂荣元亨世纪誉骏驰豪星光"
_CORP_LINES = (  # 行业, 经营范围 (91)
    ("商贸", "日用百货、五金交电、建筑材料、农副产品销售"),
    ("机械制造", "农业机械、通用机械设备及配件制造、销售"),
    ("建筑工程", "房屋建筑工程、市政公用工程、园林绿化工程施工"),
    ("食品", "食品生产；食品销售；农副产品收购"),
    ("体育用品", "体育用品及器材制造、销售；健身器材销售"),
    ("汽车零部件", "汽车零部件及配件制造、销售"),
    ("农业科技", "农业技术开发、技术咨询、技术服务；农作物种植"),
    ("物流", "普通货运；仓储服务（不含危险化学品）；装卸搬运"),
    ("纺织", "纺织品、服装制造、销售"),
    ("餐饮管理", "餐饮服务；餐饮管理；预包装食品销售"),
    ("信息技术", "软件开发；信息技术咨询服务；计算机系统集成"),
    ("医药", "药品零售；医疗器械销售"),
    ("房地产开发", "房地产开发经营；物业管理"),
    ("文化传媒", "广告设计、制作、代理、发布；组织文化艺术交流活动"),
    ("新能源", "太阳能发电技术服务；光伏设备及元器件销售"),
    ("环保科技", "环保技术推广服务；污水处理及其再生利用"),
)
_CORP_TYPES = (  # 企业类型, name suffix, weight (91)
    ("有限责任公司（自然人投资或控股）", "有限公司", 0.55),
    ("有限责任公司（自然人独资）", "有限公司", 0.25),
    ("股份有限公司（非上市、自然人投资或控股）", "股份有限公司", 0.04),
    ("有限责任公司（国有独资）", "有限公司", 0.01),
    ("个人独资企业", "中心", 0.10),
    ("普通合伙企业", "中心（普通合伙）", 0.05),
)
_SHOPS = (  # 92 个体工商户
    ("五金店", "五金产品、日用杂品零售"), ("百货超市", "日用百货、预包装食品零售"), ("饭店", "餐饮服务"),
    ("理发店", "理发及美容服务"), ("汽车修理部", "机动车维修"), ("农资经销部", "化肥、农药（不含危险化学品）、种子零售"),
    ("服装店", "服装鞋帽零售"), ("建材商店", "建筑材料零售"), ("烟酒商行", "卷烟、酒类零售"), ("水果店", "新鲜水果零售"),
    ("面馆", "小吃服务"), ("家电维修部", "日用电器修理"),
)
_COOPS = (  # 93 农民专业合作社
    ("种植专业合作社", "组织成员种植、销售小麦、玉米；提供农业技术服务"),
    ("养殖专业合作社", "组织成员饲养、销售生猪、肉牛；提供养殖技术服务"),
    ("农机专业合作社", "农机作业服务；农业机械租赁"),
    ("果蔬种植专业合作社", "组织成员种植、销售蔬菜、水果"),
    ("食用菌种植专业合作社", "组织成员种植、销售食用菌"),
)
_SCOPE_NOTE = "。（依法须经批准的项目，经相关部门批准后方可开展经营活动）"
_AUTHORITY = ("91", "92", "93")
_AUTHORITY_P = (0.86, 0.09, 0.05)
_CAPITAL_ROUND = {  # 万元 and weights, per authority
    0: ((10, 30, 50, 100, 200, 300, 500, 800, 1000, 2000, 3000, 5000, 10000),
        (6, 8, 14, 20, 12, 8, 12, 3, 8, 3, 2, 1, 0.5)),
    1: ((1, 2, 3, 5, 8, 10, 20, 30, 50), (10, 12, 10, 20, 5, 18, 10, 5, 3)),
    2: ((10, 20, 50, 100, 200, 300, 500), (15, 15, 25, 20, 12, 8, 5)),
}

# (slots, probability within its size, head age range, collective). Slots: H 户主, S 配偶, C 子女, N a married
# son, L 儿媳 (his wife), G 孙子女 (his children), F 父亲, M 母亲 (of the head).
_TEMPLATES = (
    ("H", 0.30, 20, 36, False), ("H", 0.25, 36, 60, False), ("H", 0.30, 60, 93, False), ("H", 0.15, 18, 30, True),
    ("HS", 0.55, 45, 85, False), ("HS", 0.15, 22, 35, False), ("HC", 0.15, 40, 80, False),
    ("HM", 0.10, 25, 55, False), ("HF", 0.05, 25, 55, False),
    ("HSC", 0.72, 25, 52, False), ("HSM", 0.10, 28, 55, False), ("HNL", 0.08, 50, 80, False),
    ("HSG", 0.10, 50, 75, False),
    ("HSCC", 0.55, 30, 52, False), ("HSCM", 0.15, 32, 55, False), ("HSNL", 0.10, 48, 72, False),
    ("HSFM", 0.10, 25, 45, False), ("HSGG", 0.10, 50, 75, False),
    ("HSNLG", 0.45, 48, 72, False), ("HSCCM", 0.20, 32, 55, False), ("HSCCC", 0.10, 32, 52, False),
    ("HSCFM", 0.25, 28, 45, False),
    ("HSNLGG", 0.55, 50, 75, False), ("HSCCFM", 0.25, 30, 45, False), ("HSNLGM", 0.20, 48, 62, False),
)
_SIZE_P = (0.17, 0.30, 0.22, 0.16, 0.10, 0.05)
_H, _S, _C, _N, _L, _G, _F, _M = range(8)
_SLOT = {c: i for i, c in enumerate("HSCNLGFM")}
# Per slot (H S C N L G F M): age = head age + OFFSET + SPREAD x u + SPOUSE x N(0, 3) - GAP x the son's gap
# (23-30 years) + SEX_GAP x (-2 for a man's wife, +2 for a woman's husband).
_AGE_OFFSET = np.array([0, 0, -22, 0, -1, -22, 23, 21], dtype=np.float64)
_AGE_SPREAD = np.array([0, 0, -13, 0, 0, -10, 12, 12], dtype=np.float64)
_AGE_SPOUSE = np.array([0, 1, 0, 0, 0.7, 0, 0, 0], dtype=np.float64)
_AGE_GAP = np.array([0, 0, 0, 1, 1, 1, 0, 0], dtype=np.float64)
_AGE_SEX_GAP = np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=np.float64)
_SEX_RULE = np.array([3, 4, 2, 0, 1, 2, 0, 1])  # 0 man, 1 woman, 2 either, 3 the head's sex, 4 the other
_REL_BASE = np.array([0, 1, 2, 2, 4, 5, 7, 8])  # index into RELATIONS; + 1 for a woman where _REL_SEX
_REL_SEX = np.array([0, 0, 1, 0, 0, 1, 0, 0])

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_CC_ALPHABET = b"0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_WEIGHTS = np.array([1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64)
_OC_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_CC_VALUE = np.zeros(128, dtype=np.int64)
_CC_VALUE[np.frombuffer(_CC_ALPHABET, dtype=np.uint8)] = np.arange(31)
_OC_VALUE = np.zeros(128, dtype=np.int64)  # GB 11714: digits, A=10 ... Z=35
_OC_VALUE[48:58] = np.arange(10)
_OC_VALUE[65:91] = np.arange(10, 36)
_OLD_ORG_PREFIX = np.array([7, 6, 1, 0, 5], dtype=np.int64)


def _weights(spec: str) -> tuple[list[str], np.ndarray]:
    words = spec.split()
    names, w = words[0::2], np.array([float(x) for x in words[1::2]])
    return names, np.cumsum(w / w.sum())


def _cum(p) -> np.ndarray:
    c = np.cumsum(np.asarray(p, dtype=np.float64))
    return c / c[-1]


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index into a cumulative distribution for uniform draws u."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same key."""
    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.arange(n)
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = pos - np.maximum.accumulate(np.where(starts, pos, 0)) if n else pos
    return rank


_D4 = np.array([list(f"{k:04d}".encode()) for k in range(10_000)], dtype=np.uint8)  # 0 -> b"0000"


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits of non-negative integers below 10**width, zero-padded."""
    v = values.astype(np.int64)
    parts = []
    while width > 0:
        w = min(4, width)
        parts.append(_D4[v % 10_000][:, 4 - w:])
        v = v // 10_000
        width -= w
    return parts[0] if len(parts) == 1 else np.hstack(parts[::-1])


def _date_tables(first: _dt.date, last: _dt.date) -> tuple[np.ndarray, ...]:
    d64 = np.arange(_day(first), _day(last) + 1).astype("datetime64[D]")
    months = d64.astype("datetime64[M]")
    y = months.astype(np.int64) // 12 + 1970
    m = months.astype(np.int64) % 12 + 1
    d = (d64 - months).astype(np.int64) + 1
    dash = np.full((len(d64), 1), ord("-"), dtype=np.uint8)
    return y, m, d, np.hstack([_D4[y], dash, _D4[m][:, 2:], dash, _D4[d][:, 2:]])


_TABLE_FROM = _day(_dt.date(1900, 1, 1))  # every date made here lies between 1900 and 2199
_YEAR, _MONTH, _MDAY, _ISO = _date_tables(_dt.date(1900, 1, 1), _dt.date(2199, 12, 31))


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = days - _TABLE_FROM
    return _YEAR[i], _MONTH[i], _MDAY[i]


def _date_matrix(days: np.ndarray, sep: bytes = b"-") -> np.ndarray:
    """(n, 10) YYYY-MM-DD, or (n, 8) YYYYMMDD with sep=b""."""
    iso = _ISO[days - _TABLE_FROM]
    return iso if sep == b"-" else iso[:, [0, 1, 2, 3, 5, 6, 8, 9]]


class _Codec:
    """Builds the text columns either as UTF-8 strings (encoding None) or directly as bytes in a legacy
    encoding such as GBK (binary columns), so a GBK file needs no transcoding. Characters the encoding cannot
    hold become "?" (errors="replace")."""

    def __init__(self, encoding: str | None) -> None:
        self.encoding = encoding
        self.type = pa.string() if encoding is None else pa.binary()

    def arr(self, values: Iterable[str | None]) -> pa.Array:
        if self.encoding is None:
            return pa.array(list(values), pa.string())
        enc = self.encoding
        return pa.array([None if v is None else v.encode(enc, "replace") for v in values], pa.binary())

    def scalar(self, value: str) -> pa.Scalar:
        return pa.scalar(value if self.encoding is None else value.encode(self.encoding, "replace"), self.type)

    def ascii(self, mat: np.ndarray) -> pa.Array:
        """A column from an (n, w) matrix of ASCII bytes, without copying."""
        mat = np.ascontiguousarray(mat, dtype=np.uint8)
        n, w = mat.shape
        offsets = np.arange(0, (n + 1) * w, w, dtype=np.int32)
        return pa.Array.from_buffers(self.type, n, [None, pa.py_buffer(offsets), pa.py_buffer(mat)])

    def num(self, values: np.ndarray) -> pa.Array:
        return pa.array(values.astype(np.int64)).cast(pa.string()).cast(self.type)

    def join(self, *parts, sep: str = "") -> pa.Array:
        parts = [self.scalar(p) if isinstance(p, str) else p for p in parts]
        return pc.binary_join_element_wise(*parts, self.scalar(sep))

    @staticmethod
    def take(values: pa.Array, idx: np.ndarray) -> pa.Array:
        return values.take(pa.array(idx, pa.int64()))

    def strings(self, arr: pa.Array, mask: np.ndarray) -> list[str | None]:
        """The values of arr where mask is set, as Python strings."""
        values = arr.filter(pa.array(mask)).to_pylist()
        if self.encoding is None:
            return values
        return [None if v is None else v.decode(self.encoding, "replace") for v in values]

    def patch(self, arr: pa.Array, *pieces: tuple[np.ndarray, object]) -> pa.Array:
        """arr with the rows of each (mask, values) replaced; values is an array or list (one value per set
        row, in order) or None (null). The masks do not overlap. One copy of arr whatever the pieces."""
        masks, parts = [], []
        for mask, values in pieces:
            k = int(mask.sum())
            if not k:
                continue
            if values is None:
                values = pa.nulls(k, self.type)
            elif not isinstance(values, pa.Array):
                values = self.arr(values)
            masks.append(mask)
            parts.append(values)
        if not masks:
            return arr
        if len(masks) == 1:
            return pc.replace_with_mask(arr, pa.array(masks[0]), parts[0])
        where = np.concatenate([np.flatnonzero(m) for m in masks])
        values = pa.concat_arrays(parts).take(pa.array(np.argsort(where, kind="stable")))
        return pc.replace_with_mask(arr, pa.array(np.logical_or.reduce(masks)), values)


class _Places:
    """Towns of Dingzhou (regions.json), each with its police station and a stable list of localities: the
    villages of regions.json, made-up villages for the other towns (a fixed function of the town code, not of
    the seed), and streets in the four 街道."""

    def __init__(self) -> None:
        path = Path(__file__).resolve().parent.parent / "org" / "data" / "regions.json"
        regions = json.loads(path.read_text(encoding="utf-8"))
        towns = [r for r in regions if r["level"] == "town" and r["parent"] == REGION]
        villages: dict[str, list[str]] = {}
        for r in regions:
            if r["level"] == "village":
                villages.setdefault(r["parent"], []).append(r["name"])
        self.codes = [t["code"] for t in towns]
        self.names = [t["name"] for t in towns]
        self.urban = np.array([n.endswith("街道") for n in self.names])
        self.hui = np.array(["回族" in n for n in self.names])
        weights = [1.6 if n.startswith(("南城", "北城")) else 1.3 if u else 0.8 if h else 1.0
                   for n, u, h in zip(self.names, self.urban, self.hui)]
        self.cum = _cum(weights)
        self.police = [f"定州市公安局{n.removesuffix('街道').removesuffix('镇')}派出所" for n in self.names]
        self.suffix3 = np.array([int(c[-3:]) for c in self.codes], dtype=np.int64)
        self.prefixes: list[str] = []
        start, count = [], []
        for k, (code, name) in enumerate(zip(self.codes, self.names)):
            local = list(villages.get(code, []))
            rng = np.random.default_rng(int(code))
            if self.urban[k]:
                local += [_ROADS[i] for i in sorted(rng.choice(len(_ROADS), size=8, replace=False))]
            else:
                want = 16 + int(rng.integers(0, 9))
                while len(local) < want:
                    v = (_VILLAGE_HEADS[rng.integers(len(_VILLAGE_HEADS))] * int(rng.random() < 0.6)
                         + _VILLAGE_CORES[rng.integers(len(_VILLAGE_CORES))]
                         + _VILLAGE_TAILS[rng.integers(len(_VILLAGE_TAILS))])
                    if v not in local:
                        local.append(v)
            start.append(len(self.prefixes))
            count.append(len(local))
            self.prefixes += [f"河北省定州市{name}{v}" for v in local]
        self.loc_is_road = np.array([p.endswith(("路", "街")) for p in self.prefixes])
        self.loc_start, self.loc_count = np.array(start), np.array(count)
        self.urban_idx = np.flatnonzero(self.urban)


class _Names:
    """Surnames (weighted; a Hui list for 回族 households) and given-name characters by sex and era."""

    def __init__(self) -> None:
        self.surnames, self.cum = _weights(_SURNAMES)
        hui, self.hui_cum = _weights(_HUI_SURNAMES)
        index = {s: i for i, s in enumerate(self.surnames)}
        for s in hui:
            if s not in index:
                index[s] = len(self.surnames)
                self.surnames.append(s)
        self.hui_map = np.array([index[s] for s in hui])
        pools = [_MALE_OLD, _MALE_NEW, _FEMALE_OLD, _FEMALE_NEW]
        self.pool_start = np.cumsum([0] + [len(p) for p in pools[:-1]])
        self.pool_len = np.array([len(p) for p in pools])
        self.given = list("".join(pools)) + [""]
        self.empty = len(self.given) - 1

    def surname(self, u: np.ndarray, hui: np.ndarray | None = None) -> np.ndarray:
        idx = _pick(self.cum, u)
        if hui is not None and hui.any():
            idx = np.where(hui & (u < 0.85), self.hui_map[_pick(self.hui_cum, u / 0.85)], idx)
        return idx

    def given_idx(self, female: np.ndarray, born: np.ndarray, u1: np.ndarray, u2: np.ndarray,
                  u3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indexes of one or two given-name characters (72% two), from the pool of the sex and era."""
        pool = female.astype(np.int64) * 2 + (born >= _day(_dt.date(1980, 1, 1)))
        start, size = self.pool_start[pool], self.pool_len[pool]
        g1 = start + (u1 * size).astype(np.int64)
        g2 = np.where(u3 < 0.72, start + (u2 * size).astype(np.int64), self.empty)
        return g1, g2


_PLACES: _Places | None = None
_NAMES: _Names | None = None


def _reference() -> tuple[_Places, _Names]:
    global _PLACES, _NAMES
    if _PLACES is None or _NAMES is None:
        _PLACES, _NAMES = _Places(), _Names()
    return _PLACES, _NAMES


# ----------------------------------------------------------------------------------------------------
# The streams
# ----------------------------------------------------------------------------------------------------


class Generated(Iterator[pa.RecordBatch]):
    """The batches of a generated table (an iterator), with `schema`, `rows` (yielded so far) and
    `fault_counts` (faults made so far, by kind; complete once the iterator is exhausted). With an encoding
    the columns are binary, holding text in that encoding, and the schema says so in its metadata
    (b"encoding"), which ``write_csv`` reads."""

    def __init__(self, columns: tuple[str, ...], shares: dict[str, float], n: int, batch_size: int,
                 make_block: Callable[[int, int], tuple[dict[str, pa.Array], np.ndarray]], codec: _Codec,
                 label: bool) -> None:
        self.n, self.batch_size = n, batch_size
        self.kinds = tuple(shares)
        names = list(columns) + ([FAULT_COLUMN] if label else [])
        meta = None if codec.encoding is None else {b"encoding": codec.encoding.encode()}
        self.schema = pa.schema([pa.field(c, codec.type) for c in names], metadata=meta)
        self.rows = 0
        self.fault_counts = {k: 0 for k in self.kinds}
        self._make_block, self._codec, self._label = make_block, codec, label
        self._it = self._rebatch(self._blocks())

    def __iter__(self) -> Generated:
        return self

    def __next__(self) -> pa.RecordBatch:
        batch = next(self._it)
        self.rows += batch.num_rows
        return batch

    def _blocks(self) -> Iterator[pa.RecordBatch]:
        kind_names = self._codec.arr(self.kinds)
        for b in range((self.n + BLOCK - 1) // BLOCK):
            length = min(BLOCK, self.n - b * BLOCK)
            cols, kind = self._make_block(b, length)
            for k, c in zip(self.kinds, np.bincount(kind[kind >= 0], minlength=len(self.kinds))):
                self.fault_counts[k] += int(c)
            arrays = [cols[c] for c in self.schema.names if c != FAULT_COLUMN]
            if self._label:
                labels = self._codec.take(kind_names, np.maximum(kind, 0))
                arrays.append(pc.if_else(pa.array(kind >= 0), labels, pa.nulls(length, self._codec.type)))
            yield pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _rebatch(self, blocks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        count = 0
        for block in blocks:
            pending.append(block)
            count += block.num_rows
            while count >= self.batch_size:
                parts, need = [], self.batch_size
                while need:
                    first = pending[0]
                    if first.num_rows <= need:
                        parts.append(pending.pop(0))
                        need -= first.num_rows
                    else:
                        parts.append(first.slice(0, need))
                        pending[0] = first.slice(need)
                        need = 0
                count -= self.batch_size
                yield parts[0] if len(parts) == 1 else pa.concat_batches(parts)
        if count:
            yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _rngs(seed: int, table: int, block: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The data and the fault random streams of one block."""
    return (np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(table, block, 0))),
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(table, block, 1))))


def _fault_kinds(frng: np.random.Generator, length: int, faults: float, shares: dict[str, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(kind, take): kind is -1 for a clean row, else the index of its fault kind in `shares`; take maps each
    row to the row it shows (itself, or for a duplicate an earlier clean row of the block; a duplicate with no
    clean row among its candidates is left clean). Fixed draws, so more faults only adds faults."""
    u = frng.random((3, BLOCK))[:, :length]
    kind = np.where(u[0] < faults, _pick(_cum(list(shares.values())), u[1]), -1)
    dup = list(shares).index("duplicate")
    back = 1 + (u[2] * 200).astype(np.int64)
    rows = np.flatnonzero(kind == dup)
    src = np.full(len(rows), -1, dtype=np.int64)
    for k in range(8):
        cand = rows - back[rows] - k
        ok = (src < 0) & (cand >= 0)
        ok[ok] &= kind[cand[ok]] < 0
        src[ok] = cand[ok]
    kind[rows[src < 0]] = -1
    take = np.arange(length)
    take[rows[src >= 0]] = src[src >= 0]
    return kind, take


def _mojibake(values: list[str], variant: np.ndarray, where: np.ndarray) -> list[str]:
    out = []
    for s, v, w in zip(values, variant.tolist(), where.tolist()):
        k = int(w * len(s))
        if v == 0:  # UTF-8 bytes read as GBK (an odd byte at the end reads as U+FFFD)
            out.append(s.encode("utf-8").decode("gbk", errors="replace"))
        elif v == 1:  # a character lost as U+FFFD U+FFFD, whose UTF-8 bytes read as GBK are 锟斤拷
            out.append(s[:k] + "锟斤拷" + s[k + 1:])
        else:  # a character lost as U+FFFD
            out.append(s[:k] + "\ufffd" + s[k + 1:])
    return out


def _bad_dates(days: np.ndarray, variant: np.ndarray) -> list[str]:
    y, m, d = _ymd(days)
    return [(f"{yy}-02-30", f"{yy}-02-31", f"{yy}-04-31", f"{yy}-13-{dd:02d}", f"{yy}-{mm:02d}-00", "0000-00-00",
             f"{yy}年{mm}月", "不详")[v]
            for yy, mm, dd, v in zip(y.tolist(), m.tolist(), d.tolist(), variant.tolist())]


class _People:
    def __init__(self, seed: int, faults: float, codec: _Codec) -> None:
        self.seed, self.faults, self.codec = seed, faults, codec
        self.places, self.names = _reference()
        self.id_used = np.zeros((DAY_MAX - DAY_MIN + 1) * 2, dtype=np.int64)  # per (birth day, sex)
        self.hh_used = np.zeros(len(self.places.codes), dtype=np.int64)  # per town
        self.slots = np.full((len(_TEMPLATES), 6), -1, dtype=np.int64)
        for t, (pattern, *_rest) in enumerate(_TEMPLATES):
            self.slots[t, :len(pattern)] = [_SLOT[c] for c in pattern]
        size_of = np.array([len(t[0]) for t in _TEMPLATES])
        self.head_lo = np.array([t[2] for t in _TEMPLATES], dtype=np.float64)
        self.head_hi = np.array([t[3] for t in _TEMPLATES], dtype=np.float64)
        self.collective = np.array([t[4] for t in _TEMPLATES]).astype(np.int64)
        self.has_spouse = np.array(["S" in t[0] for t in _TEMPLATES])
        self.both_parents = np.array(["F" in t[0] and "M" in t[0] for t in _TEMPLATES])
        self.size_templates = [(np.flatnonzero(size_of == s), _cum([t[1] for t in _TEMPLATES if len(t[0]) == s]))
                               for s in range(1, 7)]
        c, P, N = codec, self.places, self.names
        self.t_prefix, self.t_police = c.arr(P.prefixes), c.arr(P.police)
        self.t_town = c.arr(["河北省定州市" + n for n in P.names])
        self.t_surname, self.t_given = c.arr(N.surnames), c.arr(N.given)
        self.t_rel, self.t_sex, self.t_eth = c.arr(RELATIONS), c.arr(["1", "2"]), c.arr(ETHNIC_CODES)
        self.t_marital, self.t_edu, self.t_hhtype = c.arr(MARITAL_CODES), c.arr(EDUCATION_CODES), c.arr(HOUSEHOLD_TYPES)
        self.t_estate, self.t_city, self.t_road = c.arr(_ESTATES), c.arr(_OTHER_CITIES), c.arr(_CITY_ROADS)

    def _sequence(self, day: np.ndarray, female: np.ndarray) -> np.ndarray:
        """Unique 3-digit sequence numbers per (birth day, sex), odd for men, even for women; moves a person
        to the next day with numbers left when a day is used up (changes `day` in place)."""
        seq = np.empty(len(day), dtype=np.int64)
        todo = np.arange(len(day))
        cap = np.where(female, 499, 500)
        ndays = DAY_MAX - DAY_MIN + 1
        while len(todo):
            key = (day[todo] - DAY_MIN) * 2 + female[todo]
            k = self.id_used[key] + _rank_within(key)
            ok = k < cap[todo]
            self.id_used += np.bincount(key[ok], minlength=len(self.id_used))
            d, kk, f = day[todo[ok]], k[ok], female[todo[ok]]
            seq[todo[ok]] = np.where(f, 2 * ((kk * 211 + d * 5) % 499) + 2, 2 * ((kk * 173 + d * 7) % 500) + 1)
            todo = todo[~ok]
            day[todo] = DAY_MIN + (day[todo] - DAY_MIN + 1) % ndays
        return seq

    def block(self, b: int, length: int) -> tuple[dict[str, pa.Array], np.ndarray]:
        rng, frng = _rngs(self.seed, 1, b)
        P, N, c = self.places, self.names, self.codec
        nh = BLOCK // 2
        hu = rng.random((12, nh))
        ru = rng.random((17, BLOCK))[:, :length]
        spouse_delta = rng.standard_normal(BLOCK)[:length] * 3

        # Households: sizes, templates, and the rows they cover.
        size = _pick(_cum(_SIZE_P), hu[0]) + 1
        tmpl = np.empty(nh, dtype=np.int64)
        for s in range(1, 7):
            ids, cum = self.size_templates[s - 1]
            sel = size == s
            tmpl[sel] = ids[_pick(cum, hu[1][sel])]
        ends = np.cumsum(size)
        if ends[-1] < length:  # cannot happen: BLOCK // 2 households of mean size 2.9
            raise RuntimeError("household draw too short")
        nhh = int(np.searchsorted(ends, length, side="left")) + 1
        size, tmpl, ends, hu = size[:nhh], tmpl[:nhh], ends[:nhh], hu[:, :nhh]
        hh = np.searchsorted(ends, np.arange(length), side="right")
        slot = self.slots[tmpl[hh], np.arange(length) - (ends - size)[hh]]
        town = _pick(P.cum, hu[2])
        head_age = self.head_lo[tmpl] + hu[3] * (self.head_hi[tmpl] - self.head_lo[tmpl])
        head_male = hu[4] < 0.78
        son_gap = 23 + hu[5] * 7
        hui_town = P.hui[town]
        eth_hh = np.where(hui_town, _pick(_cum(_ETHNIC_P_HUI), hu[6]), _pick(_cum(_ETHNIC_P), hu[6]))
        family_sn = N.surname(hu[7], eth_hh == 1)
        head_own_sn = N.surname(hu[8], eth_hh == 1)
        loc = P.loc_start[town] + (hu[9] * P.loc_count[town]).astype(np.int64)
        house_no = 1 + (hu[10] ** 1.4 * 260).astype(np.int64)
        flat = P.loc_is_road[loc] & (hu[11] < 0.6)
        hh_no = self.hh_used[town] + _rank_within(town) + 1
        self.hh_used += np.bincount(town, minlength=len(self.hh_used))

        # People: age, sex, relation, ethnicity, surname, ID sequence number.
        ha, hm, t, gap = head_age[hh], head_male[hh], tmpl[hh], son_gap[hh]
        is_h, is_s, is_c, is_n, is_l, is_g, is_f = (slot == k for k in (_H, _S, _C, _N, _L, _G, _F))
        age = (ha + _AGE_OFFSET[slot] + _AGE_SPREAD[slot] * ru[0] + _AGE_SPOUSE[slot] * spouse_delta
               - _AGE_GAP[slot] * gap + _AGE_SEX_GAP[slot] * np.where(hm, -2.0, 2.0))
        age = np.where(age < 0, ru[1] * 6, age)
        age = np.where(age > 95, 80 + ru[1] * 15, age)
        born = np.clip(_day(AS_OF) - (age * 365.2425).astype(np.int64), DAY_MIN, DAY_MAX)
        rule = _SEX_RULE[slot]
        female = np.where(rule == 2, ru[2] >= 0.515, np.where(rule == 3, ~hm, np.where(rule == 4, hm, rule == 1)))
        rel = _REL_BASE[slot] + _REL_SEX[slot] * female
        in_law = is_s | is_l | (slot == _M)
        own_eth = np.where(hui_town[hh], _pick(_cum(_ETHNIC_P_HUI), ru[3]), _pick(_cum(_ETHNIC_P), ru[3]))
        eth = np.where(in_law, own_eth, eth_hh[hh])
        own_sn = N.surname(ru[4], eth == 1)
        head_sn = np.where(hm, family_sn[hh], head_own_sn[hh])
        sn = np.select([is_h, is_s, is_f, in_law], [head_sn, np.where(hm, own_sn, family_sn[hh]), head_sn, own_sn],
                       family_sn[hh])
        seq = self._sequence(born, female)  # may move `born` by a day

        # Marriage (GB/T 2261.2 index), education (GB/T 4658 index), registration day.
        married = np.where(ru[5] < 0.55, 1, np.where(ru[5] < 0.90, 2, np.where(ru[5] < 0.97, 3, 4)))
        single_old = np.where(ru[6] < 0.75, 5, np.where(ru[6] < 0.9, 6, 0))
        single_mid = np.where(ru[6] < 0.4, 6, np.where(ru[6] < 0.7, 5, 0))
        head_single = np.where(age < 25, 0, np.where(age < 40, np.where(ru[6] < 0.6, 0, 6),
                                                     np.where(age < 60, single_mid, single_old)))
        child = np.where(age < 22, 0, np.where(age < 30, np.where(ru[6] < 0.7, 0, married),
                                               np.where(ru[6] < 0.6, married, np.where(ru[6] < 0.8, 0, 6))))
        marital = np.select([is_h, is_s | is_n | is_l, is_c, is_g],
                            [np.where(self.has_spouse[t], married, head_single), married, child, 0],
                            np.where(self.both_parents[t], married, np.where(ru[6] < 0.8, 5, 1)))
        marital = np.where(ru[7] < 0.003, 7, marital)
        cohort = np.digitize(_ymd(born)[0], [1950, 1970, 1985])
        edu = np.zeros(length, dtype=np.int64)
        for k, (codes, p) in enumerate((((2, 4, 6, 5, 7), (0.02, 0.06, 0.55, 0.25, 0.12)),
                                        ((2, 1, 3, 4, 5, 6, 7), (0.04, 0.02, 0.08, 0.15, 0.45, 0.25, 0.01)),
                                        ((1, 2, 3, 4, 5, 6), (0.08, 0.12, 0.12, 0.2, 0.45, 0.03)),
                                        ((0, 1, 2, 3, 4, 5), (0.03, 0.17, 0.25, 0.15, 0.15, 0.25)))):
            sel = cohort == k
            edu[sel] = np.array(codes)[_pick(_cum(p), ru[8][sel])]
        edu = np.select([age < 7, age < 13, age < 16, age < 19], [7, 6, 5, np.where(ru[8] < 0.7, 4, 3)], edu)
        reg = np.where(born >= _DAY_1958, born + 3 + (ru[9] * 90).astype(np.int64),
                       _DAY_1958 + (ru[9] * (_DAY_1961 - _DAY_1958)).astype(np.int64))
        reg = np.where((is_s | is_l) & (age > 22), born + ((21 + ru[10] * 7) * 365.2425).astype(np.int64), reg)
        reg = np.clip(np.maximum(reg, born), None, DAY_MAX)
        g1, g2 = N.given_idx(female, born, ru[11], ru[12], ru[13])

        # Faults. A duplicate row shows an earlier clean row: every per-row value is taken from there.
        kind, take = _fault_kinds(frng, length, self.faults, PEOPLE_FAULT_SHARES)
        fu = frng.random((4, BLOCK))[:, :length]
        rows = np.flatnonzero(take != np.arange(length))
        for a in (hh, born, seq, female, rel, eth, sn, g1, g2, marital, edu, reg, t):
            a[rows] = a[take[rows]]
        ru[:, rows] = ru[:, take[rows]]
        is_ = {k: kind == i for i, k in enumerate(PEOPLE_FAULT_SHARES)}

        # 公民身份号码 (GB 11643) and 出生日期.
        mat = np.empty((length, 18), dtype=np.uint8)
        year = _ymd(born)[0]
        region = np.full(length, int(REGION), dtype=np.int64)
        for before, code in ID_REGIONS_BEFORE[::-1]:
            region[year < before] = int(code)
        mat[:, :6] = _digits(region, 6)
        mat[:, 6:14] = _date_matrix(born, b"")
        mat[:, 14:17] = _D4[seq][:, 1:]
        check = ((mat[:, :17].astype(np.int64) - 48) @ _ID_WEIGHTS) % 11
        bad = is_["bad_check"]
        check[bad] = (check[bad] + 1 + (fu[0][bad] * 10).astype(np.int64)) % 11
        mat[:, 17] = _ID_CHECK[check]
        shown_born = born.copy()
        mis = is_["birth_mismatch"]
        off = 1 + (fu[0][mis] * 400).astype(np.int64)
        shown_born[mis] += np.where(fu[1][mis] < 0.5, -off, off)

        # Text.
        name = c.join(c.take(self.t_surname, sn), c.take(self.t_given, g1), c.take(self.t_given, g2))
        moj = is_["mojibake"]
        moj_name, moj_addr = moj & (fu[1] < 0.5), moj & (fu[1] >= 0.5)
        variant = (fu[2] * 3).astype(np.int64)
        name = c.patch(name, (is_["missing_name"], None),
                       (moj_name, _mojibake(c.strings(name, moj_name), variant[moj_name], fu[3][moj_name])))
        households = c.join(c.take(self.t_prefix, loc), c.num(house_no), "号")
        if flat.any():
            f = (hu[11][flat] * 1e6).astype(np.int64)
            households = c.patch(households, (flat, c.join(
                households.filter(pa.array(flat)), c.num(f % 20 + 1), "号楼", c.num(f // 20 % 4 + 1), "单元",
                c.num((f // 80 % 18 + 1) * 100 + f % 4 + 1), "室")))
        home = c.take(households, hh)
        address = c.patch(home, (moj_addr, _mojibake(c.strings(home, moj_addr), variant[moj_addr], fu[3][moj_addr])))
        moved, away = (ru[14] >= 0.80) & (ru[14] < 0.95), ru[14] >= 0.95
        z = (ru[15] * 1e9).astype(np.int64)
        zm, za = z[moved], z[away]
        apartment = c.join(c.take(self.t_town, P.urban_idx[zm % len(P.urban_idx)]),
                           c.take(self.t_estate, (zm // 7) % len(_ESTATES)), c.num((zm // 131) % 30 + 1), "号楼",
                           c.num((zm // 3931) % 4 + 1), "单元",
                           c.num(((zm // 15727) % 18 + 1) * 100 + (zm // 283111) % 4 + 1), "室")
        elsewhere = c.join(c.take(self.t_city, za % len(_OTHER_CITIES)),
                           c.take(self.t_road, (za // 11) % len(_CITY_ROADS)), c.num((za // 127) % 300 + 1), "号")
        now = c.patch(home, (moved, apartment), (away, elsewhere))
        reg_fmt = np.where(ru[16] < 0.80, 0, np.where(ru[16] < 0.92, 1, 2))
        bad_reg = is_["bad_reg_date"]
        compact, slashed = (reg_fmt == 1) & ~bad_reg, (reg_fmt == 2) & ~bad_reg
        ys, ms, ds = _ymd(reg[slashed])
        registered = c.patch(c.ascii(_date_matrix(reg)),
                             (compact, c.ascii(_date_matrix(reg[compact], b""))),
                             (slashed, c.join(c.num(ys), c.num(ms), c.num(ds), sep="/")),
                             (bad_reg, _bad_dates(reg[bad_reg], (fu[2][bad_reg] * 8).astype(np.int64))))
        cols = {
            "公民身份号码": c.ascii(mat),
            "姓名": name,
            "性别": c.take(self.t_sex, female.astype(np.int64)),
            "民族": c.take(self.t_eth, eth),
            "出生日期": c.ascii(_date_matrix(shown_born)),
            "户籍地址": address,
            "现住址": now,
            "户号": c.ascii(np.hstack([_digits(P.suffix3[town][hh], 3), _digits(hh_no[hh], 7)])),
            "与户主关系": c.take(self.t_rel, rel),
            "婚姻状况": c.take(self.t_marital, marital),
            "学历": c.take(self.t_edu, edu),
            "户口类别": c.take(self.t_hhtype, self.collective[t]),
            "户籍登记日期": registered,
            "所属派出所": c.take(self.t_police, town[hh]),
        }
        return cols, kind


class _Enterprises:
    def __init__(self, seed: int, faults: float, codec: _Codec) -> None:
        self.seed, self.faults, self.codec = seed, faults, codec
        self.places, self.names = _reference()
        c = codec
        self.t_types = c.arr([t[0] for t in _CORP_TYPES] + ["个体工商户", "农民专业合作社"])
        scopes = [s for _, s in _CORP_LINES] + [s for _, s in _SHOPS] + [s for _, s in _COOPS]
        self.n_tails = len(scopes)
        self.t_tails = c.arr([x for x, _ in _CORP_LINES] + [x for x, _ in _SHOPS] + [x for x, _ in _COOPS])
        self.t_scopes = c.arr(scopes + [s + _SCOPE_NOTE for s in scopes])
        self.tail_start = np.array([0, len(_CORP_LINES), len(_CORP_LINES) + len(_SHOPS)])
        self.tail_len = np.array([len(_CORP_LINES), len(_SHOPS), len(_COOPS)])
        self.t_suffix = c.arr([t[1] for t in _CORP_TYPES] + [""])
        self.type_cum = _cum([t[2] for t in _CORP_TYPES])
        self.t_trade = c.arr(list(_TRADE_CHARS))
        self.t_frac = c.arr([""] + [f".{k:02d}" for k in range(1, 100)])
        self.t_place = c.arr(["定州市"] + ["定州市" + n for n in self.places.names])
        self.t_prefix = c.arr(self.places.prefixes)
        self.t_surname, self.t_given = c.arr(self.names.surnames), c.arr(self.names.given)
        self.t_status, self.t_authority = c.arr(BUSINESS_STATUS), c.arr([REGISTRATION_AUTHORITY])

    def block(self, b: int, length: int) -> tuple[dict[str, pa.Array], np.ndarray]:
        rng, frng = _rngs(self.seed, 2, b)
        P, N, c = self.places, self.names, self.codec
        u = rng.random((20, BLOCK))[:, :length]
        i = b * BLOCK + np.arange(length, dtype=np.int64)  # the row number: makes the codes unique

        auth = _pick(_cum(_AUTHORITY_P), u[0])
        ago = (-np.log1p(-u[1]) * np.array([9.0, 6.0, 5.0])[auth] * 365.2425).astype(np.int64)
        founded = _day(AS_OF) - ago
        since_1990 = _day(_dt.date(1990, 1, 1)) + (u[2] * (_day(AS_OF) - _day(_dt.date(1990, 1, 1)))).astype(np.int64)
        founded = np.where(founded < _day(_dt.date(1984, 1, 1)), since_1990, founded)
        coop_law = _day(_dt.date(2007, 7, 1))
        founded = np.where((auth == 2) & (founded < coop_law),
                           coop_law + (u[2] * (_day(AS_OF) - coop_law)).astype(np.int64), founded)
        ctype = np.where(auth == 0, _pick(self.type_cum, u[3]), len(_CORP_TYPES) - 1 + auth)
        tail = self.tail_start[auth] + (u[4] * self.tail_len[auth]).astype(np.int64)
        town = _pick(P.cum, u[5])
        t1, t2 = (u[6] * len(_TRADE_CHARS)).astype(np.int64), (u[7] * len(_TRADE_CHARS)).astype(np.int64)
        rep_female = u[8] >= 0.78
        rep_born = founded - ((25 + u[9] * 30) * 365.2425).astype(np.int64)
        rep_sn = N.surname(u[10])
        g1, g2 = N.given_idx(rep_female, rep_born, u[11], u[12], u[13])
        capital = np.empty(length, dtype=np.int64)  # in 0.01 万元
        for a in range(3):
            sel = auth == a
            values, w = _CAPITAL_ROUND[a]
            capital[sel] = np.array(values)[_pick(_cum(w), u[14][sel])] * 100
        capital = np.where(u[15] < 0.15, (capital * (0.5 + u[16])).astype(np.int64), capital)
        loc = P.loc_start[town] + (u[17] * P.loc_count[town]).astype(np.int64)
        house_no = 1 + (u[18] * 300).astype(np.int64)
        status = _pick(_cum(_BUSINESS_STATUS_P), u[19])
        y, m, d = _ymd(founded)
        years = np.array([20, 30, 50])[(u[16] * 3).astype(np.int64) % 3]
        term = ((y + years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (m - 1).astype("timedelta64[M]")
                ).astype("datetime64[D]").astype(np.int64) + d - 2
        long_term = (auth > 0) | (u[13] < 0.45)
        approved = founded + (u[12] * (_day(AS_OF) - founded)).astype(np.int64)

        kind, take = _fault_kinds(frng, length, self.faults, ENTERPRISE_FAULT_SHARES)
        fu = frng.random((3, BLOCK))[:, :length]
        rows = np.flatnonzero(take != np.arange(length))
        for a in (i, auth, founded, ctype, tail, town, t1, t2, rep_sn, g1, g2, capital, loc, house_no, status, term,
                  long_term, approved):
            a[rows] = a[take[rows]]
        is_ = {k: kind == n for n, k in enumerate(ENTERPRISE_FAULT_SHARES)}

        # 统一社会信用代码 (GB 32100): 9, kind, region, organization code (8 + GB 11714 check), MOD 31 check.
        # Organization codes: "MA" + 6 from the row number for those registered since 2015-10-01 (三证合一),
        # 8 digits before; both bijections of the row number, so no two rows share a code.
        new_style = founded >= _day(_dt.date(2015, 10, 1))
        mat = np.empty((length, 18), dtype=np.uint8)
        mat[:, 0] = ord("9")
        mat[:, 1] = ord("1") + auth
        mat[:, 2:8] = np.frombuffer(REGION.encode(), dtype=np.uint8)
        alphabet = np.frombuffer(_CC_ALPHABET, dtype=np.uint8)
        new_body = (i * 548_512_867 + 40_123_457) % 31**6  # 548512867 is prime to 31
        body = np.empty((length, 8), dtype=np.uint8)
        body[:, 0], body[:, 1] = ord("M"), ord("A")
        body[:, 2:] = alphabet[(new_body[:, None] // 31 ** np.arange(5, -1, -1)) % 31]
        old_body = _OLD_ORG_PREFIX[i % 5] * 10**7 + (i // 5 * 6_180_339 + 1_234_567) % 10**7  # 6180339: prime to 10
        body = np.where(new_style[:, None], body, _digits(old_body, 8))
        mat[:, 8:16] = body
        oc = 11 - (_OC_VALUE[body] @ _OC_WEIGHTS) % 11
        mat[:, 16] = np.where(oc == 10, ord("X"), np.where(oc == 11, ord("0"), 48 + oc % 10))
        check = (31 - (_CC_VALUE[mat[:, :17]] @ _CC_WEIGHTS) % 31) % 31
        bad = is_["bad_check"]
        check[bad] = (check[bad] + 1 + (fu[0][bad] * 30).astype(np.int64)) % 31
        mat[:, 17] = alphabet[check]

        name = c.join(c.take(self.t_place, np.where(auth == 0, 0, town + 1)), c.take(self.t_trade, t1),
                      c.take(self.t_trade, t2), c.take(self.t_tails, tail),
                      c.take(self.t_suffix, np.where(auth == 0, ctype, len(_CORP_TYPES))))
        bc = is_["bad_capital"]
        variants = (lambda w: f"{w}万元", lambda w: f"{w}万人民币", lambda w: "不详", lambda w: "壹佰万元",
                    lambda w: "--", lambda w: f"约{w}")
        money = c.patch(c.join(c.num(capital // 100), c.take(self.t_frac, capital % 100)),
                        (bc, [variants[v](w) for v, w in zip((fu[1][bc] * len(variants)).astype(np.int64).tolist(),
                                                             (capital[bc] // 100).tolist())]))
        shown_founded = np.where(is_["future_founded"], _day(AS_OF) + 400 + (fu[2] * 3250).astype(np.int64), founded)
        cols = {
            "统一社会信用代码": c.ascii(mat),
            "单位名称": c.patch(name, (is_["missing_name"], None)),
            "企业类型": c.take(self.t_types, ctype),
            "法定代表人姓名": c.join(c.take(self.t_surname, rep_sn), c.take(self.t_given, g1), c.take(self.t_given, g2)),
            "注册资本": money,
            "成立日期": c.ascii(_date_matrix(shown_founded)),
            "住所": c.join(c.take(self.t_prefix, loc), c.num(house_no), "号"),
            "经营范围": c.take(self.t_scopes, tail + new_style * self.n_tails),
            "登记机关": c.take(self.t_authority, np.zeros(length, dtype=np.int64)),
            "经营状态": c.take(self.t_status, status),
            "营业期限至": c.patch(c.ascii(_date_matrix(term)), (long_term, None)),
            "核准日期": c.ascii(_date_matrix(approved)),
        }
        return cols, kind


def _stream(table: str, n: int, seed: int, faults: float, batch_size: int, encoding: str | None,
            label_faults: bool) -> Generated:
    if n < 0 or batch_size < 1:
        raise ValueError("n must be >= 0 and batch_size >= 1")
    if not 0 <= faults <= 1:
        raise ValueError("faults must be between 0 and 1")
    limit = MAX_PEOPLE if table == "people" else MAX_ENTERPRISES
    if n > limit:
        raise ValueError(f"at most {limit:,} rows")
    if encoding is not None:
        "".encode(encoding)  # LookupError for an unknown codec
    codec = _Codec(encoding)
    if table == "people":
        gen = _People(seed, faults, codec)
        return Generated(PEOPLE_COLUMNS, PEOPLE_FAULT_SHARES, n, batch_size, gen.block, codec, label_faults)
    gen = _Enterprises(seed, faults, codec)
    return Generated(ENTERPRISE_COLUMNS, ENTERPRISE_FAULT_SHARES, n, batch_size, gen.block, codec, label_faults)


def people_batches(n: int, *, seed: int = 2026, faults: float = 0.03, batch_size: int = 100_000,
                   encoding: str | None = None, label_faults: bool = False) -> Generated:
    """n people of Dingzhou's household register (``PEOPLE_COLUMNS``, nullable strings) in batches of
    `batch_size` rows; a share `faults` of the rows carry one fault each (``PEOPLE_FAULT_SHARES``).
    encoding="gbk" (or another codec) gives binary columns already encoded, for a fast ``write_csv``."""
    return _stream("people", n, seed, faults, batch_size, encoding, label_faults)


def enterprise_batches(n: int, *, seed: int = 2026, faults: float = 0.03, batch_size: int = 100_000,
                       encoding: str | None = None, label_faults: bool = False) -> Generated:
    """n enterprises of Dingzhou's enterprise register (``ENTERPRISE_COLUMNS``, nullable strings); a share
    `faults` of the rows carry one fault each (``ENTERPRISE_FAULT_SHARES``)."""
    return _stream("enterprise", n, seed, faults, batch_size, encoding, label_faults)


# ----------------------------------------------------------------------------------------------------
# CSV
# ----------------------------------------------------------------------------------------------------

def _norm(encoding: str) -> str:
    import codecs

    return codecs.lookup(encoding).name


def write_csv(path, batches: Iterable[pa.RecordBatch] | pa.Table, *, encoding: str = "gbk", header: bool = True,
              columns: Iterable[str] | None = None, errors: str = "replace") -> int:
    """Writes batches to a CSV file one batch at a time and returns the number of rows written.

    Fields are quoted only in a batch that holds a comma, quote or line break (then every text field of that
    batch is quoted, RFC 4180); null and the empty string are both an empty field; lines end with LF.
    `encoding` is a Python codec that keeps ASCII as ASCII ("gbk", "gb18030", "utf-8", "utf-8-sig"). String
    columns are encoded here with errors="replace" by default: a character the encoding lacks becomes "?"
    (which is what turns the U+FFFD fault into "?" in GBK); errors="strict" raises instead. Binary columns
    from a generator made with an encoding (schema metadata b"encoding") already hold encoded text: they are
    written as they are when it is the file's encoding, else transcoded. `columns` picks and orders columns."""
    schema = getattr(batches, "schema", None)  # a Table's or a Generated stream's: the header of an empty file
    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    columns = list(columns) if columns is not None else None
    target = codecs.lookup(encoding).name
    rows = 0
    with open(path, "wb") as out:
        if target == "utf-8-sig":  # the BOM once, then plain UTF-8
            out.write(codecs.BOM_UTF8)
            encoding = target = "utf-8"
        wrote_header = not header
        for batch in batches:
            if columns is not None:
                batch = batch.select(columns)
            meta = batch.schema.metadata or {}
            source = codecs.lookup(meta[b"encoding"].decode()).name if b"encoding" in meta else "utf-8"
            if not wrote_header:
                names = ",".join(_quote(n) for n in batch.schema.names) + "\n"
                out.write(names.encode(encoding, errors))
                wrote_header = True
            if not batch.num_rows:
                continue
            # Arrow's writer copies string bytes as they are, so encoded text goes through it as "strings"
            # (a comma, quote or line break is the same byte in every ASCII-compatible encoding).
            view = pa.RecordBatch.from_arrays(
                [c.view(pa.string()) if pa.types.is_binary(c.type) else c for c in batch.columns],
                names=batch.schema.names)
            sink = io.BytesIO()
            try:
                pacsv.write_csv(view, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
            except pa.ArrowInvalid:  # a comma, quote or line break in this batch: quote its text
                sink = io.BytesIO()
                pacsv.write_csv(view, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            data = sink.getbuffer()
            if source != target:
                data = str(data, source, "replace" if source != "utf-8" else "strict").encode(encoding, errors)
            out.write(data)
            del data
            rows += batch.num_rows
        if not wrote_header and schema is not None:
            names = columns if columns is not None else schema.names
            out.write((",".join(_quote(n) for n in names) + "\n").encode(encoding, errors))
    return rows


def _quote(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value
