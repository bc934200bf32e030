"""A Sphinx extension for this book: what depends on where it is published.

- The repository's address (`repository.url` in _config.yml), when set, gives every page
  the repository button (beside the theme's download button) and every notebook page a
  Colab launch button; empty, neither
  (Jupyter Book refuses repository buttons without an address).
- MathJax comes from the copy that `make html` vendors into book/_vendor/mathjax, so that
  the book works offline; where that copy is absent (`jupyter-book build book/` on a fresh
  clone), from MathJax's public CDN, at the same version.
"""

from pathlib import Path

COLAB = "https://colab.research.google.com"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-mml-chtml.js"
VENDORED = Path("_vendor") / "mathjax" / "tex-mml-chtml.js"


def publish(app, config):
    theme = config.html_theme_options
    if theme.get("repository_url"):
        theme["use_repository_button"] = True
        theme.setdefault("launch_buttons", {})["colab_url"] = COLAB
    if not (Path(app.srcdir) / VENDORED).is_file():
        config.mathjax_path = MATHJAX_CDN
        config.html_extra_path = [p for p in config.html_extra_path if p != "_vendor"]


def setup(app):
    # before Sphinx checks html_extra_path (priority 800)
    app.connect("config-inited", publish, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
