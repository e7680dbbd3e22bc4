"""The built-in engine's generic answer per intent, in English and Vietnamese, using the slots: an order answer names
the order, and names what the merchant's order lookup said (`OrderStatus`). The merchant's FAQ, when it matches, is
preferred by the caller; these answers promise nothing the shop has not said (no fees, dates or hours of their own:
the hours answer is the account's business hours, chatbot/nlu/hours.py).
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from chatbot.nlu.hours import hours_sentence
from chatbot.nlu.normalize import has_diacritics, normalize, strip_diacritics

EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# Marks only Vietnamese puts on Latin letters (NFD): horn (ơ, ư), breve (ă), hook above (ả), dot below (ạ); and đ
VI_MARKS = frozenset("\u031b\u0306\u0309\u0323")
# Vietnamese written without accents still reads as Vietnamese: words (after short forms are spelled out) that an
# English message does not use
VI_WORDS = frozenset(
    """khong duoc nhieu nhe nha roi chua giup minh toi cua voi giao mua muon sao dau oi xin chao cam gio bao nhieu
    vay gi nao cho em thi dang tra doi tien gia mau ao quan giay tuan kiem hoan phi nhan vien gap hoi vang luon qua
    lam chu hom nay co con alo hay tu van truc tiep nghi xuong cong bang hang""".split()  # noqa: SIM905 - a word list reads better as text
)
VI_PAIRS = frozenset(
    ("cam on", "don hang", "bao nhieu", "the nao", "khi nao", "bao gio", "o dau", "shop oi", "xin chao", "doi tra")
)


@dataclass(frozen=True)
class OrderStatus:
    status: str
    shipped_at: date | None
    expected_at: date | None
    tracking_url: str


def detect_language(text: str) -> str:
    """ "vi" for Vietnamese marks, or Vietnamese words with or without accents ("don hang", "khong"), else "en"."""
    folded = normalize(text).folded
    if "đ" in folded or VI_MARKS.intersection(unicodedata.normalize("NFD", folded)):
        return "vi"
    tokens = normalize(text).key.split()
    if any(f"{a} {b}" in VI_PAIRS for a, b in itertools.pairwise(tokens)):
        return "vi"
    hits = sum(1 for token in tokens if token in VI_WORDS)
    if hits >= 2 or (hits == 1 and (len(tokens) <= 3 or has_diacritics(text))):
        return "vi"
    accented = sum(1 for ch in folded if ch != strip_diacritics(ch))
    return "vi" if accented >= 2 else "en"


GENERIC = {
    "en": {
        "shipping_info": "We can help with delivery. Tell me where the order should go (city or district) and which "
        "items, and we'll confirm the shipping fee and how long it takes.",
        "return_refund": "We can help with a return, an exchange or a refund. Please send your order number and what "
        "you'd like to return or exchange (and why), and we'll guide you through it.",
        "product_inquiry": "Which product are you asking about? Send its name or a link, and the size or colour you "
        "need, and we'll check it for you.",
        "pricing": "Which product would you like a price for? Send its name or a link (and the size or model), and "
        "we'll confirm the price and any current promotion.",
        "store_hours": "Our team will confirm the opening hours and the address shortly. You can keep writing to us "
        "here at any time.",
        "greeting": "Hi! How can I help you today? I can check an order, or answer questions about products, prices, "
        "shipping and returns.",
        "thanks": "You're welcome! Is there anything else I can help you with?",
        "human_agent_request": "Of course, I'm passing you to a member of our team.",
        "complaint": "I'm sorry about this. I'm passing your message to our team so a person can look into it "
        "right away.",
    },
    "vi": {
        "shipping_info": "Shop hỗ trợ giao hàng ạ. Bạn cho shop biết địa chỉ nhận (tỉnh/thành, quận/huyện) và sản "
        "phẩm muốn mua, shop sẽ báo phí vận chuyển và thời gian giao nhé.",
        "return_refund": "Shop hỗ trợ đổi trả và hoàn tiền ạ. Bạn gửi giúp shop mã đơn hàng và sản phẩm muốn đổi/trả "
        "(kèm lý do), shop sẽ hướng dẫn bạn nhé.",
        "product_inquiry": "Bạn đang hỏi về sản phẩm nào ạ? Gửi shop tên hoặc link sản phẩm, kèm size hoặc màu bạn "
        "cần, shop kiểm tra giúp bạn nhé.",
        "pricing": "Bạn muốn hỏi giá sản phẩm nào ạ? Gửi shop tên hoặc link (kèm size hoặc mẫu), shop sẽ báo giá và "
        "khuyến mãi hiện có nhé.",
        "store_hours": "Nhân viên shop sẽ báo giờ mở cửa và địa chỉ cho bạn ngay ạ. Bạn cứ nhắn tin cho shop ở đây "
        "bất cứ lúc nào nhé.",
        "greeting": "Xin chào! Shop có thể giúp gì cho bạn ạ? Shop có thể kiểm tra đơn hàng, hoặc trả lời về sản "
        "phẩm, giá, giao hàng và đổi trả.",
        "thanks": "Không có gì ạ! Bạn cần shop hỗ trợ thêm gì không?",
        "human_agent_request": "Dạ vâng, shop chuyển bạn sang nhân viên hỗ trợ ngay ạ.",
        "complaint": "Shop rất xin lỗi về sự việc này. Shop đã chuyển tin nhắn của bạn cho nhân viên để xử lý ngay ạ.",
    },
}

REPHRASE = {
    "en": "Sorry, I didn't quite get that. Could you say it another way? I can help with orders, shipping, returns, "
    "products, prices and opening hours.",
    "vi": "Xin lỗi, shop chưa hiểu ý bạn. Bạn nói lại giúp shop theo cách khác được không ạ? Shop có thể hỗ trợ về "
    "đơn hàng, giao hàng, đổi trả, sản phẩm, giá và giờ mở cửa.",
}

ASK_ORDER_ID = {
    "en": "I can check that for you. What is your order number (for example #12345)?",
    "vi": "Shop kiểm tra giúp bạn ngay ạ. Bạn cho shop xin mã đơn hàng nhé (ví dụ #12345)?",
}
WILL_CHECK = {
    "en": "Let me check order #{order_id} for you. A member of our team will reply here shortly.",
    "vi": "Shop sẽ kiểm tra đơn hàng #{order_id} cho bạn. Nhân viên shop sẽ trả lời bạn tại đây ngay ạ.",
}
ORDER_COMPLAINT = {
    "en": "I'm sorry about order #{order_id}. I'm passing your message to our team so a person can look into it "
    "right away.",
    "vi": "Shop rất xin lỗi về đơn hàng #{order_id}. Shop đã chuyển tin nhắn của bạn cho nhân viên để xử lý ngay ạ.",
}
ORDER_RETURN = {
    "en": "We can help with order #{order_id}. What would you like to return or exchange, and why?",
    "vi": "Shop hỗ trợ đơn hàng #{order_id} ngay ạ. Bạn muốn đổi hay trả sản phẩm nào, vì lý do gì ạ?",
}

# what an order lookup's `status` says, as the middle of "Order #12345 ..."; unknown statuses are quoted
STATUS_PHRASES = {
    "en": {
        "pending": "has been received",
        "confirmed": "is confirmed",
        "processing": "is being prepared",
        "packed": "is packed",
        "shipped": "is on its way",
        "in_transit": "is on its way",
        "out_for_delivery": "is out for delivery",
        "delivered": "has been delivered",
        "cancelled": "was cancelled",
        "canceled": "was cancelled",
        "returned": "was returned",
        "refunded": "was refunded",
    },
    "vi": {
        "pending": "đã được tiếp nhận",
        "confirmed": "đã được xác nhận",
        "processing": "đang được chuẩn bị",
        "packed": "đã được đóng gói",
        "shipped": "đang được giao",
        "in_transit": "đang được giao",
        "out_for_delivery": "đang được giao đến bạn",
        "delivered": "đã được giao thành công",
        "cancelled": "đã bị hủy",
        "canceled": "đã bị hủy",
        "returned": "đã được hoàn trả",
        "refunded": "đã được hoàn tiền",
    },
}
ON_THE_WAY = frozenset({"shipped", "in_transit", ""})
FINISHED = frozenset({"delivered", "cancelled", "canceled", "returned", "refunded"})


def generic_answer(
    intent: str,
    language: str,
    slots: dict[str, str],
    *,
    order: OrderStatus | None = None,
    business_hours: dict[str, Any] | None = None,
) -> str:
    lang = language if language in GENERIC else "en"
    if intent == "store_hours" and (hours := hours_sentence(business_hours, lang)):
        return hours
    order_id = slots.get("orderId", "")
    if intent == "order_status_query":
        if not order_id:
            return ASK_ORDER_ID[lang]
        if order is None:
            return WILL_CHECK[lang].format(order_id=order_id)
        return order_status_sentence(order_id, order, lang)
    if order_id and intent == "complaint":
        return ORDER_COMPLAINT[lang].format(order_id=order_id)
    if order_id and intent == "return_refund":
        return ORDER_RETURN[lang].format(order_id=order_id)
    return GENERIC[lang].get(intent) or REPHRASE[lang]


def rephrase(language: str) -> str:
    return REPHRASE.get(language, REPHRASE["en"])


def order_status_sentence(order_id: str, order: OrderStatus, language: str) -> str:
    """E.g. "Order #12345 was shipped on January 15 and is expected on January 20." (or in Vietnamese)."""
    vi = language == "vi"
    status = order.status.strip().casefold().replace(" ", "_").replace("-", "_")
    clauses: list[str] = []
    if order.shipped_at:
        shipped = _day(order.shipped_at, vi)
        clauses.append(f"đã được gửi đi ngày {shipped}" if vi else f"was shipped on {shipped}")
    if not (order.shipped_at and status in ON_THE_WAY):
        phrase = STATUS_PHRASES["vi" if vi else "en"].get(status)
        if phrase is None:
            phrase = f'có trạng thái "{order.status}"' if vi else f'has the status "{order.status}"'
        clauses.append(phrase)
    if order.expected_at and status not in FINISHED:
        expected = _day(order.expected_at, vi)
        clauses.append(f"dự kiến giao ngày {expected}" if vi else f"is expected on {expected}")
    subject = f"Đơn hàng #{order_id}" if vi else f"Order #{order_id}"
    sentence = f"{subject} {_join(clauses, 'và' if vi else 'and')}."
    if order.tracking_url:
        sentence += (
            f" Bạn theo dõi đơn tại: {order.tracking_url}" if vi else f" You can track it here: {order.tracking_url}"
        )
    return sentence


def _day(day: date, vi: bool) -> str:
    return f"{day.day:02d}/{day.month:02d}" if vi else f"{EN_MONTHS[day.month - 1]} {day.day}"


def _join(clauses: list[str], conjunction: str) -> str:
    if len(clauses) <= 1:
        return "".join(clauses)
    return f"{', '.join(clauses[:-1])} {conjunction} {clauses[-1]}"
