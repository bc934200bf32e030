"""A Sphinx extension for this book: each page lists each script once.

Every inline script reached the pages twice (registered once with the file
name None, once with ""), so sphinx-thebe's `const THEBE_JS_URL = ...` was
declared twice on every page and the browser logged an error.
"""


def _script_key(script):
    # an inline script is registered once with filename None and once with "":
    # the same script
    attributes = getattr(script, "attributes", {}) or {}
    return getattr(script, "filename", str(script)) or "", attributes.get("body")


def unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
