"""The base of every form: no text field accepts control characters.

PostgreSQL refuses a NUL in any text, and no one types the other C0 control characters on
purpose, so every text field (passwords aside: they are only hashed) refuses them with a
Chinese message, unless the field's own checks have refused it already (they may say it more
precisely)::

    from app.core.forms import SafeForm as FlaskForm
"""
from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField

# C0 controls and DEL; tab, line feed and carriage return are left to each field's own rules
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MESSAGE = "不能包含控制字符。"


def has_control_characters(text: str | None) -> bool:
    return bool(text) and CONTROL_CHARACTERS.search(text) is not None


class SafeForm(FlaskForm):
    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if (isinstance(field, StringField) and not isinstance(field, PasswordField) and not field.errors
                    and isinstance(field.data, str) and has_control_characters(field.data)):
                field.errors = [MESSAGE]
                valid = False
        return valid
