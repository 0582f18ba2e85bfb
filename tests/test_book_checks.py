"""The book checks (tests/book_checks.py) fail on what they guard against, shown on small pages
shaped like Jupyter Book's: a CDN-loaded math renderer, a visible injected-parameters cell, and a
Markdown table left as a paragraph of pipes. (book_checks.py itself runs on the built book.)"""

import book_checks as bc

CDN_PAGE = '<script defer="defer" src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>' \
           '<p><span class="math notranslate nohighlight">\\(x_t\\)</span></p>'
LOCAL_PAGE = '<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>' \
             '<p><span class="math notranslate nohighlight">\\(x_t\\)</span></p>'
INJECTED = '<div class="cell tag_injected-parameters docutils container"><div class="cell_input docutils container">' \
           '<div class="highlight"><pre><span></span><span class="c1"># Parameters</span>\n' \
           '<span class="n">profile</span> <span class="o">=</span> <span class="s2">&quot;smoke&quot;</span>\n</pre></div></div></div>'
PIPES = '<div class="cell_output docutils container"><div class="output text_markdown">' \
        '<p>| guidance s | prompt accuracy |\n|---|---|\n| 0 | <strong>9%</strong> |</p></div></div>'
PRINTED = '<div class="cell_output docutils container"><div class="output stream highlight-myst-ansi notranslate">' \
          '<div class="highlight"><pre><span></span>| s | FID |\n|---|---|\n| 1 | 5.0 |\n</pre></div></div></div>'
TABLE = '<div class="cell_output docutils container"><div class="output text_markdown"><table class="table">' \
        '<thead><tr><th>guidance s</th></tr></thead><tbody><tr><td>0</td></tr></tbody></table></div></div>'
CODE = '<div class="cell_input docutils container"><div class="highlight"><pre>' \
       '<span class="n">rows</span> <span class="o">=</span> <span class="p">[</span><span class="s2">&quot;|---|---|&quot;</span>]</pre></div></div>'


def test_cdn_math_renderer_is_caught(tmp_path):
    assert bc.remote_math_scripts(CDN_PAGE) == ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"]
    assert bc.remote_math_scripts(LOCAL_PAGE) == []
    page = tmp_path / "notebooks" / "01.html"
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    page.parent.mkdir()
    assert bc.local_math_scripts(LOCAL_PAGE, page) == []  # the script file is missing: not served
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("// MathJax")
    assert bc.local_math_scripts(LOCAL_PAGE, page) == [tmp_path / "_static" / "mathjax" / "tex-chtml.js"]
    assert bc.has_math(LOCAL_PAGE)


def test_visible_injected_cell_is_caught():
    assert bc.visible_injected_cells(INJECTED) == 1
    assert bc.visible_injected_cells(CODE + TABLE) == 0


def test_table_left_as_text_is_caught():
    assert bc.tables_left_as_text(PIPES)
    assert bc.tables_left_as_text(PRINTED)
    assert bc.tables_left_as_text(PIPES.replace("|---|---|", "|—|—|"))  # the typographer's em dashes
    assert bc.tables_left_as_text(TABLE) == []
    assert bc.tables_left_as_text(CODE) == []  # a table's pipes in the code itself are fine
    assert bc.output_tables(TABLE) == 1
