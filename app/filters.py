"""Jinja filters: times in Asia/Shanghai, phones formatted or masked, sex in Chinese, birth years."""
from __future__ import annotations

from datetime import date

from flask import Flask, request, url_for

from app.core.clock import to_local
from app.core.masking import format_phone, mask_phone


def page_url(page: int) -> str:
    """The current page's URL with another page number, keeping the search arguments."""
    args = {**(request.view_args or {}), **request.args.to_dict(), "page": page}
    return url_for(request.endpoint, **args)


def birth_year(birth: date | None) -> str:
    """The year of a birth date ("1960"): what roster pages show instead of the birth date,
    which with the masked ID and the region would rebuild the ID number. Not an age as of
    today either: watched day by day, it ticks up on the birthday (docs/privacy.md)."""
    return "" if birth is None else str(birth.year)


def register(app: Flask) -> None:
    app.add_template_global(page_url)
    tz_name = app.config["DISPLAY_TIMEZONE"]
    app.add_template_filter(lambda v, fmt="%Y-%m-%d %H:%M": to_local(v, tz_name, fmt), "localtime")
    app.add_template_filter(mask_phone, "mask_phone")
    app.add_template_filter(format_phone, "format_phone")
    app.add_template_filter(lambda v: {"M": "男", "F": "女"}.get(v, ""), "sex_label")
    app.add_template_filter(birth_year, "birth_year")
    app.add_template_filter(lambda v: f"{v:,}" if isinstance(v, int) else v, "thousands")
    app.add_template_global(pct)


def pct(value: float | None, digits: int = 1) -> str:
    """A proportion as a percentage for people ("87.5%"); "—" when there is none."""
    return "—" if value is None else f"{value * 100:.{digits}f}%"
