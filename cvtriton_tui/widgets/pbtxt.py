"""A Pygments lexer for protobuf *text format* (Triton's ``config.pbtxt``), for ``rich.syntax.Syntax``.

Pygments' ``protobuf`` lexer reads ``.proto`` schemas and mangles text-format indentation, so the wizard
brings its own: field names, strings, numbers, enum constants (TYPE_FP32, KIND_GPU), brackets, comments.
Imported only when a config is shown (Pygments is not needed for the first paint).
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Keyword, Name, Number, Punctuation, String, Text


class PbtxtLexer(RegexLexer):
    name = "Protocol Buffers text format"
    aliases = ["pbtxt", "textproto"]
    filenames = ["*.pbtxt", "*.textproto"]

    tokens = {
        "root": [
            (r"\s+", Text),
            (r"#.*?$", Comment.Single),
            (r"([A-Za-z_][A-Za-z0-9_]*)(\s*)(:)", bygroups(Name.Attribute, Text, Punctuation)),
            (r"([A-Za-z_][A-Za-z0-9_]*)(\s*)(?=[{\[])", bygroups(Name.Tag, Text)),
            (r'"(\\\\|\\"|[^"])*"', String.Double),
            (r"'(\\\\|\\'|[^'])*'", String.Single),
            (r"-?\d+\.\d*([eE][-+]?\d+)?|-?\d+", Number),
            (r"\b(true|false)\b", Keyword.Constant),
            (r"[A-Z][A-Z0-9_]*", Name.Constant),
            (r"[{}\[\],;]", Punctuation),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
        ],
    }
