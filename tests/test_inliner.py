"""Our CSS inliner (newsletter/inliner.py) writes what premailer writes, byte for byte:
premailer, with the options the project used, is the reference it is tested against."""

from __future__ import annotations

import logging

import pytest

from newsletter.config import Settings
from newsletter.essays import read_essays
from newsletter.inliner import inline_css
from newsletter.render import Renderer


def premailer(html: str) -> str:
    from premailer import Premailer

    return str(Premailer(html, keep_style_tags=False, strip_important=False, allow_network=False, disable_validation=True,
                         disable_basic_attributes=["height"], cssutils_logging_level=logging.CRITICAL).transform(pretty_print=False))


def test_every_sample_issue_and_the_hard_essay_inline_as_premailer_does(hard_essay: Settings) -> None:
    renderer = Renderer(hard_essay)
    essays, errors = read_essays(hard_essay.issues_path)
    assert not errors and len(essays) == 8
    for essay in essays:
        html = renderer.env.get_template("email.html.j2").render(renderer.context(essay), body_html=renderer.body(essay).html)
        assert inline_css(html) == premailer(html), essay.slug


EDGES = {
    "specificity, then the element's own style": """<html><head><style>
#first { color: green !important } .lead { color: blue; font-size: 14px } p { color: red; margin: 0 } p.lead { font-size: 12px }
li { color: red !important } ul li { color: blue }
</style></head><body><p id="first" class="lead" style="margin: 4px">a</p><p class="lead">b</p><p>c</p><ul><li>d</li></ul></body></html>""",
    "attributes for mail apps, never height": """<html><head><style>
td { text-align: center; vertical-align: top; background-color: #abc; width: 300px; height: 20px }
table { background-color: transparent; width: 100% }
</style></head><body><table height="10"><tr><td>x</td></tr></table></body></html>""",
    "what stays in <style>": """<!DOCTYPE html><html><head><style>
a:hover { color: red } a { color: blue } * { margin: 0 } li:first-child { font-weight: bold } li:nth-child(2) { color: red }
@media (max-width: 600px) { a { color: green } p, li { font-size: 14px !important } }
</style></head><body><ul><li><a href="#">x</a></li><li>y</li></ul></body></html>""",
    "blocks left alone": """<html><head><style media="print">p { color: red }</style>
<style data-premailer="ignore">[data-ogsc] p { color: white !important }</style>
<style>p { color: blue; margin: unset }</style><style></style></head><body><p>x</p></body></html>""",
    "no head, a floated image, an empty match": """<html><body><style>img { float: right; max-width: 100% } .none { color: red }
</style><p><img src="a.png" alt="a"></p></body></html>""",
}


@pytest.mark.parametrize("html", EDGES.values(), ids=EDGES.keys())
def test_each_rule_of_inlining_is_premailers(html: str) -> None:
    assert inline_css(html) == premailer(html)
