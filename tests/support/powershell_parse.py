"""Parse-checking PowerShell text with the tree-sitter grammar (no PowerShell on Linux)."""

from __future__ import annotations

from tests.support.requirements import missing


def parser():
    try:
        import tree_sitter
        import tree_sitter_powershell
    except ImportError:
        missing("tree-sitter-powershell not installed: pip install -e '.[test]'")
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def parse_errors(source: str) -> list[str]:
    data = source.encode("utf-8")
    errors: list[str] = []

    def walk(node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            errors.append(f"line {row + 1}, column {col + 1}: {data[node.start_byte : node.end_byte][:60]!r}")
        for child in node.children:
            walk(child)

    walk(parser().parse(data).root_node)
    return errors
