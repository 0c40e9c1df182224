"""Static CSS and JavaScript inlined into the HTML report (kept as Python strings so packaging needs nothing extra)."""

from netscope.render.assets.report_css import NOTEBOOK_CSS, PAGE_CSS
from netscope.render.assets.report_js import PAGE_JS

__all__ = ["PAGE_CSS", "NOTEBOOK_CSS", "PAGE_JS"]
