"""Renderers: turn rows of plain values into text (table, markdown, csv, json) or HTML."""
