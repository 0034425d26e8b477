"""README.md and docs/: every relative link resolves, the README fits a
first look."""

import functools
import os
import re

import pytest

from tests import helpers

# [text](target) outside code spans; images too.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@functools.lru_cache(maxsize=None)
def _anchors(path: str) -> frozenset[str]:
  """GitHub's anchors of a Markdown file's headings."""
  with open(path) as f:
    headings = [line.lstrip("#").strip() for line in f
                if line.startswith("#") and not line.startswith("#!")]
  return frozenset(re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
                   for h in headings)


def _markdown_files() -> list[str]:
  files = list(helpers.DOC_FILES) + ["experiments/README.md"]
  return [f for f in files if os.path.exists(os.path.join(helpers.ROOT, f))]


def _links(path: str) -> list[str]:
  with open(os.path.join(helpers.ROOT, path)) as f:
    text = f.read()
  text = re.sub(r"```.*?```", "", text, flags=re.S)   # code blocks
  text = re.sub(r"`[^`\n]*`", "", text)               # code spans
  return _LINK.findall(text)


@pytest.mark.parametrize("page", _markdown_files())
def test_every_relative_link_resolves(page):
  broken = []
  for target in _links(page):
    if re.match(r"[a-z]+:", target):   # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition("#")
    resolved = (os.path.join(helpers.ROOT, page) if not file_part else
                os.path.normpath(os.path.join(helpers.ROOT,
                                              os.path.dirname(page),
                                              file_part)))
    if not os.path.exists(resolved):
      broken.append(f"{target} (no file)")
    elif anchor and anchor not in _anchors(resolved):
      broken.append(f"{target} (no heading #{anchor})")
  assert not broken, f"{page}: broken links: {broken}"


def test_the_readme_links_every_docs_page_and_fits_a_first_look():
  with open(os.path.join(helpers.ROOT, "README.md")) as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 250
  for page in helpers.DOC_FILES[1:]:
    assert f"]({page})" in readme, f"README does not link {page}"


def test_a_broken_link_is_found(tmp_path, monkeypatch):
  """The check above can fail: a page linking a missing file and a missing
  heading."""
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "a.md").write_text(
      "# Title\n\n[ok](#title) [gone](missing.md) [no](#nowhere) "
      "`[code](skipped.md)`\n")
  monkeypatch.setattr(helpers, "ROOT", str(tmp_path))
  with pytest.raises(AssertionError, match=r"missing\.md \(no file\).*"
                     r"#nowhere \(no heading #nowhere\)"):
    test_every_relative_link_resolves("docs/a.md")
