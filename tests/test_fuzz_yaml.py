"""Property-based fuzzing of the strict YAML reader itself (Hypothesis).

Generated documents built from YAML's punctuation, anchors and aliases (bombs included),
deep nesting, duplicate keys and raw bytes end in a mapping or a one-line error of the
caller's class, within the Hypothesis deadline (an alias bomb must not hang).
"""

from fuzz_support import FUZZ, MAX_EXAMPLES, record, report
from hypothesis import given
from hypothesis import strategies as st

from bench.errors import DataFileError
from bench.validate import parse_yaml

_TOKENS = st.sampled_from(["a", "b", ": ", "- ", "\n", "  ", "[", "]", "{", "}", ", ", "&x ", "*x", "&y ", "*y", "<<: ",
                           "? ", "!!str ", "!!python/name:os.system ", "'", '"', "#", "|", ">", "---\n", "...\n",
                           ".nan", "1e999", "2020-13-45", "0x", "\t", "\x00", "\x85", "\ufeff", "é", "%YAML 1.1\n"])


@st.composite
def _bomb(draw):
    width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, depth):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


_DOCS = st.one_of(
    st.lists(_TOKENS, max_size=60).map("".join),
    _bomb(),
    st.integers(1, 3000).map(lambda n: "k: " + "[" * n + "]" * n + "\n"),
    st.integers(1, 300).map(lambda n: "".join(" " * i + f"k{i}:\n" for i in range(n)) + " " * n + "v\n"),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def test_fuzz_yaml_reader():
    @FUZZ
    @given(_DOCS, st.booleans())
    def run(text, as_bytes):
        doc = text.encode("utf-8", "surrogatepass") if as_bytes else text
        out = record("yaml_reader", "generated", lambda: parse_yaml(doc, DataFileError, "fuzz.yaml"), (DataFileError,))
        assert out is None or isinstance(out, dict)

    run()
    assert report("yaml_reader", "generated") >= MAX_EXAMPLES // 2
