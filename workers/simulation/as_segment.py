"""Simulated touchpoints written as the Segment calls a tracker would have sent.

For the Segment format's tests and benchmark: the same people and behaviour as a
``simulate`` stream, in Segment Spec form (docs/formats/segment.md maps them back).
"""

from __future__ import annotations

from typing import Any

_REVERSE = {"product_view": "Product Viewed", "search": "Products Searched",
            "add_to_cart": "Product Added", "checkout_started": "Checkout Started",
            "purchase": "Order Completed", "email_open": "Email Opened",
            "email_click": "Email Link Clicked", "video_play": "Video Playback Started",
            "signup": "Signed Up", "form_submit": "Form Submitted",
            "download": "File Downloaded", "ad_click": "Ad Clicked"}


def to_segment(tp: dict[str, Any]) -> dict[str, Any]:
    """A touchpoint written as the Segment call a tracker would have sent."""
    identity, device = tp["identity"], tp.get("device", {})
    ctx = tp.get("context", {})
    context: dict[str, Any] = {"library": {"name": tp["source"]}}
    traits = {k: identity[k] for k in ("email", "phone", "crm_id") if k in identity}
    context["device"] = {k: v for k, v in (("id", identity.get("device_id")),
                                           ("type", device.get("type"))) if v}
    for key, field in (("os", "os"), ("app", "app_version")):
        if field in device:
            context[key] = {"name" if key == "os" else "version": device[field]}
    context.update({"page": {"url": ctx["page_url"]}} if "page_url" in ctx else {})
    context.update({"sessionId": ctx["session_id"]} if "session_id" in ctx else {})
    context.update({"location": ctx["geo"]} if "geo" in ctx else {})
    context.update({"campaign": ctx["campaign"]} if "campaign" in ctx else {})
    call: dict[str, Any] = {"messageId": tp["event_id"], "timestamp": tp["occurred_at"],
                            "channel": tp["channel"], "context": context,
                            "properties": tp.get("properties", {})}
    call.update({"userId": identity["user_id"]} if "user_id" in identity else {})
    call.update({"anonymousId": identity["anonymous_id"]} if "anonymous_id" in identity
                else {})
    kind = {"identify": "identify", "page_view": "page", "app_open": "screen"}
    call["type"] = kind.get(tp["type"], "track")
    if call["type"] == "track":
        call["event"] = _REVERSE.get(tp["type"], tp["type"])
    if call["type"] == "identify":
        call["traits"] = {**tp.get("traits", {}), **traits}
    elif traits or "traits" in tp:
        context["traits"] = {**tp.get("traits", {}), **traits}
    return call
