"""WTForms fields the item kinds build; they only collect input, ``Item.clean`` judges it."""
from __future__ import annotations

from wtforms import IntegerField, SelectMultipleField, widgets


class LenientIntegerField(IntegerField):
    """Never raises WTForms' English "Not a valid integer value."; clean() judges the raw text."""

    def process_formdata(self, valuelist):
        if valuelist:
            try:
                self.data = int(valuelist[0])
            except (TypeError, ValueError):
                self.data = None


class CheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()
