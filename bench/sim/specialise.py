"""The kernel's one source, specialised to Python scalars: the gym step without numpy-shaped overhead.

:func:`bench.sim.kernel.request_physics` is written once, over an ``ops`` object
(numpy arrays or Python scalars). Run with the scalar ``ops`` every ``where`` is
a Python call, every output goes through an identity ``bc``, and the request's
inputs arrive in three dicts built per step: about half of a gym step. This
module rewrites that same function's syntax tree once (at first use) into a
scalar function:

* ``where(c, a, b)`` becomes ``a if c else b``; ``mx(a, b)`` becomes ``b if b > a else a`` (Python's
  ``max``, inlined; ``mn`` likewise), ``div(n, d)`` becomes ``n / d if d != 0.0 else div(n, d)``; ``ops.clip(v, lo, hi)`` becomes
  ``mn(mx(v, lo), hi)``; ``ops.not_(v)`` becomes ``not v``; ``ops.take(rows, i)``
  becomes ``rows[i]``; ``ops.any``, ``ops.pick``, ``ops.fill`` and ``bc`` disappear
  (one request is its own selection); ``ops.batch`` is ``False`` and the
  branches it decides are folded; ``ops.nan`` is ``math.nan`` (``_NAN``);
* ``x["kc"]``, ``route["rtt"]``, ``state["tx_free"]`` (constant keys only) become
  positional parameters ``x_kc`` ..., in the order the caller declares;
* ``phases`` is ``False`` (the step records no ledger; the ledger comes from the batch path).

Nothing is added: the physics is the source's, so the scalar step and the batch
paths cannot drift apart. The rewrite refuses what it does not understand (any
other use of ``ops`` or of the input dicts), and ``tests/sim/test_specialise.py``
checks the result against the unspecialised source run with the scalar ``ops``.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import math
import textwrap
from typing import Callable, Mapping, Sequence


class SpecialiseError(ValueError):
    """The source uses a construct the scalar rewrite does not handle."""


class _ToScalar(ast.NodeTransformer):
    def __init__(self, dicts: Mapping[str, Sequence[str]], constants: Mapping[str, object]):
        self.dicts = dicts
        self.constants = constants
        self.n_tmp = 0

    def _once(self, e):
        """(an expression that evaluates ``e`` and keeps it, one that reuses it): a name or constant is
        used as is; anything else is bound to a fresh local with ``:=`` where it is first evaluated."""
        if isinstance(e, (ast.Name, ast.Constant)):
            return e, e
        name = f"_t{self.n_tmp}"
        self.n_tmp += 1
        return ast.NamedExpr(target=ast.Name(id=name, ctx=ast.Store()), value=e), ast.Name(id=name, ctx=ast.Load())

    # ---------------------------------------------------------------- expressions
    def visit_Subscript(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.dicts:
            key = node.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise SpecialiseError(f"line {node.lineno}: {node.value.id}[...] needs a constant key")
            if key.value not in self.dicts[node.value.id]:
                raise SpecialiseError(f"line {node.lineno}: {node.value.id}[{key.value!r}] is not a declared key "
                                      f"({list(self.dicts[node.value.id])})")
            return ast.copy_location(ast.Name(id=f"{node.value.id}_{key.value}", ctx=ast.Load()), node)
        return self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in self.dicts:
            raise SpecialiseError(f"line {node.lineno}: {node.id} is used other than as {node.id}['key']")
        if node.id in self.constants and isinstance(node.ctx, ast.Load):
            return ast.copy_location(ast.Constant(self.constants[node.id]), node)
        if node.id == "ops":
            raise SpecialiseError(f"line {node.lineno}: ops is used other than as ops.<operation>")
        return node

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id == "ops":
            if node.attr == "batch":
                return ast.copy_location(ast.Constant(False), node)
            if node.attr == "nan":
                return ast.copy_location(ast.Name(id="_NAN", ctx=ast.Load()), node)
            raise SpecialiseError(f"line {node.lineno}: ops.{node.attr} outside a call")
        return self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        args = node.args
        if node.keywords or any(isinstance(a, ast.Starred) for a in args):
            return self.generic_visit(node)
        if isinstance(f, ast.Name) and f.id == "where" and len(args) == 3:
            c, a, b = (self.visit(v) for v in args)
            return ast.copy_location(ast.IfExp(test=c, body=a, orelse=b), node)
        if isinstance(f, ast.Name) and f.id == "bc" and len(args) == 1:
            return self.visit(args[0])
        if isinstance(f, ast.Name) and f.id in ("mx", "mn") and len(args) == 2:
            # max(a, b) is `b if b > a else a` (a unless b is larger: NaN as Python's max), min likewise with <
            a, b = (self.visit(v) for v in args)
            a_get, a_use = self._once(a)
            b_get, b_use = self._once(b)
            cmp = ast.Compare(left=b_get, ops=[ast.Gt() if f.id == "mx" else ast.Lt()], comparators=[a_get])
            return ast.copy_location(ast.IfExp(test=cmp, body=b_use, orelse=a_use), node)
        if isinstance(f, ast.Name) and f.id == "div" and len(args) == 2:
            # n / d unless d is zero (then div's own rule: +-inf or 0)
            n, d = (self.visit(v) for v in args)
            d_get, d_use = self._once(d)
            test = ast.Compare(left=d_get, ops=[ast.NotEq()], comparators=[ast.Constant(0.0)])
            slow = ast.Call(func=ast.Name(id="div", ctx=ast.Load()), args=[n, d_use], keywords=[])
            return ast.copy_location(ast.IfExp(test=test, body=ast.BinOp(left=n, op=ast.Div(), right=d_use),
                                               orelse=slow), node)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "ops":
            a = [self.visit(v) for v in args]
            op = f.attr
            if op == "clip" and len(a) == 3:  # min(max(v, lo), hi), inlined as mn/mx are
                inner = ast.Call(func=ast.Name(id="mx", ctx=ast.Load()), args=[a[0], a[1]], keywords=[])
                new = self.visit(ast.Call(func=ast.Name(id="mn", ctx=ast.Load()), args=[inner, a[2]], keywords=[]))
            elif op == "not_" and len(a) == 1:
                new = ast.UnaryOp(op=ast.Not(), operand=a[0])
            elif op in ("any", "pick") and len(a) in (1, 2):
                new = a[0]
            elif op == "fill" and len(a) == 3:
                new = a[2]
            elif op == "select" and len(a) == 1:
                new = ast.Constant(None)
            elif op == "take" and len(a) == 2:
                new = ast.Subscript(value=a[0], slice=a[1], ctx=ast.Load())
            elif op in ("mx", "mn", "div", "where"):
                raise SpecialiseError(f"line {node.lineno}: call ops.{op} through its local name")
            else:
                raise SpecialiseError(f"line {node.lineno}: no scalar rewrite for ops.{op}")
            return ast.copy_location(new, node)
        return self.generic_visit(node)

    def visit_BoolOp(self, node):
        node = self.generic_visit(node)
        if isinstance(node.op, ast.Or):  # `False or x` -> x
            vals = [v for v in node.values if not (isinstance(v, ast.Constant) and v.value is False)]
            if not vals:
                return ast.copy_location(ast.Constant(False), node)
            if len(vals) == 1:
                return vals[0]
            node.values = vals
        return node

    # ---------------------------------------------------------------- statements
    def visit_If(self, node):
        node = self.generic_visit(node)
        if isinstance(node.test, ast.Constant):
            return (node.body if node.test.value else node.orelse) or None
        return node

    def visit_With(self, node):  # `with np.errstate(...)`: scalars raise nothing to silence
        node = self.generic_visit(node)
        return node.body

    def visit_Assign(self, node):
        names = [t.id for tgt in node.targets for t in ast.walk(tgt) if isinstance(t, ast.Name)]
        if "bc" in names:  # the broadcaster: every bc(v) is v
            return None
        if any(isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "ops"
               for v in ast.walk(node.value)) and all(isinstance(v, (ast.Tuple, ast.Attribute, ast.Name, ast.Load))
                                                     for v in ast.walk(node.value)):
            return None  # `mx, mn, ... = ops.mx, ops.mn, ...`: bound by the namespace instead
        return self.generic_visit(node)


def specialise_scalar(fn: Callable, dicts: Mapping[str, Sequence[str]], namespace: Mapping[str, object],
                      constants: Mapping[str, object] | None = None, name: str | None = None) -> Callable:
    """``fn`` rewritten for Python scalars (see the module docstring).

    ``dicts``: the dict parameters of ``fn`` and their keys, in the order they become
    positional parameters (``x_kc`` ...); ``namespace``: the globals the result runs in
    (``mx``, ``mn``, ``div`` must be bound there); ``constants``: parameters fixed to a
    constant (e.g. ``phases=False``). The other parameters of ``fn`` except ``ops`` keep
    their names and order, before the dicts' keys.
    """
    constants = dict(constants or {})
    src = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(src)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise SpecialiseError(f"{fn.__name__} is not a plain function")
    fdef.decorator_list = []
    fdef.name = name or f"{fn.__name__}_scalar"
    drop = set(dicts) | set(constants) | {"ops"}
    kept = [a for a in fdef.args.args if a.arg not in drop]
    flat = [ast.arg(arg=f"{d}_{k}") for d, keys in dicts.items() for k in keys]
    fdef.args = ast.arguments(posonlyargs=[], args=kept + flat, vararg=None, kwonlyargs=[], kw_defaults=[],
                              kwarg=None, defaults=[])
    fdef.returns = None
    for a in kept:
        a.annotation = None
    body = fdef.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring describes the array version
    fdef.body = body
    tree = _ToScalar(dicts, constants).visit(tree)
    ast.fix_missing_locations(tree)
    code_src = ast.unparse(tree)
    filename = f"<specialised {fn.__module__}.{fn.__qualname__}>"
    linecache.cache[filename] = (len(code_src), None, code_src.splitlines(True), filename)  # readable tracebacks
    scope = {**namespace, "_NAN": math.nan}
    exec(compile(code_src, filename, "exec"), scope)  # noqa: S102  (our own source, rewritten)
    out = scope[fdef.name]
    out.__doc__ = f"{fn.__name__} specialised to Python scalars (bench.sim.specialise).\n\n" + code_src
    return out
