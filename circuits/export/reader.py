"""The way back: device values of an exported subcircuit, read by eqspice's own parser.

ngspice executes a netlist's ``.control`` block, whose ``shell`` command runs
programs, and ``.include``/``.lib`` read other files; a netlist handed back by
someone else is therefore never given to a simulator to read.  This parser
accepts exactly what :mod:`eqspice.circuits.export` writes in the SPICE
dialects (``ngspice``, ``spice``, ``xyce``) for a subcircuit file:

* comments (``*`` lines) and blank lines;
* one ``.model NAME D(...)`` card of the run's diode and one ``.subckt`` ...
  ``.ends`` block, then optionally ``.end``;
* inside it, ``R`` (memristors, output loads), ``D`` (the hidden diodes) and
  ``G`` (the antisymmetric couplings) elements; values are numbers, with
  SPICE's scale suffixes (``10k``, ``2.5meg``) allowed.

Everything else is refused with one line that names the line: any
``.control``, ``shell``, ``.include`` or ``.lib``, any other card, any element
the project does not model (C, L, B, E, F, X, ...), an expression, and any
difference from the run's topology (an element missing, added, or between
other nodes; other ports; another diode model or area).  Nothing is returned
half-read: the caller writes the run only after the whole file passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from eqspice.circuits.export.design import design
from eqspice.circuits.network import Circuit

#: SPICE's scale suffixes (case-insensitive; ``meg`` before ``m``).
SCALE = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "mil": 25.4e-6, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*$", re.I)

#: Diode model parameters an exported card holds; others are refused (the engines model no more).
MODEL_PARAMETERS = {"is", "n", "rs", "cjo", "tt", "eg", "xti", "tnom", "level"}


class NetlistRefused(ValueError):
    """A netlist eqspice will not read; the message names the file, the line and why."""


@dataclass(frozen=True)
class Card:
    line: int
    tokens: list[str]


@dataclass(frozen=True)
class Subcircuit:
    """What a subcircuit file holds: its name and ports, the diode card, and every element by name."""

    name: str
    ports: list[str]
    model: dict[str, float]
    model_name: str
    #: element name (lower case) -> (line, nodes, value, keyword parameters)
    elements: dict[str, tuple[int, list[str], float, dict[str, float]]]


def number(text: str, where: str) -> float:
    match = NUMBER.match(text)
    if not match:
        raise NetlistRefused(f"{where}: {text!r} is not a number (expressions and parameters are not read)")
    value = float(match.group(1)) * SCALE.get((match.group(2) or "").lower(), 1.0)
    if not np.isfinite(value):
        raise NetlistRefused(f"{where}: {text!r} is not finite")
    return value


def cards(text: str, source: str) -> list[Card]:
    """Logical lines (``+`` continuations joined), lower-cased, comments dropped; the dangerous ones refused."""
    out: list[Card] = []
    for k, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("*"):
            continue
        words = line.lower().replace("(", " ( ").replace(")", " ) ").replace("=", " = ").split()
        where = f"{source}:{k}"
        if words[0] in (".control", ".endc"):
            raise NetlistRefused(f"{where}: {words[0]} block refused (ngspice would execute it)")
        if "shell" in words or words[0].startswith(("shell", "!")):
            raise NetlistRefused(f"{where}: 'shell' refused (it runs a program)")
        if words[0] in (".include", ".inc", ".lib", ".libinclude"):
            raise NetlistRefused(f"{where}: {words[0]} refused (it reads another file; give one self-contained file)")
        if line.startswith("+"):
            if not out:
                raise NetlistRefused(f"{where}: a continuation line with nothing to continue")
            out[-1].tokens.extend(words[1:] if words[0] == "+" else [words[0][1:], *words[1:]])
        else:
            out.append(Card(k, words))
    return out


def _keywords(tokens: list[str], where: str) -> tuple[list[str], dict[str, float]]:
    """Split ``a b c key = 1 ...`` into positional tokens and keyword values."""
    positional, keywords, i = [], {}, 0
    while i < len(tokens):
        if i + 1 < len(tokens) and tokens[i + 1] == "=":
            if i + 2 >= len(tokens):
                raise NetlistRefused(f"{where}: {tokens[i]}= has no value")
            keywords[tokens[i]] = number(tokens[i + 2], where)
            i += 3
        else:
            positional.append(tokens[i])
            i += 1
    return positional, keywords


def read_subckt(text: str, source: str = "netlist") -> Subcircuit:
    """Parse an exported subcircuit file, refusing anything outside the accepted subset (see the module)."""
    name, ports, model, model_name = None, None, None, None
    elements: dict = {}
    inside = ended = False
    for card in cards(text, source):
        where = f"{source}:{card.line}"
        head, rest = card.tokens[0], card.tokens[1:]
        if ended:
            raise NetlistRefused(f"{where}: {head} after .end")
        if head == ".model":
            if model is not None or len(rest) < 2 or inside:
                raise NetlistRefused(f"{where}: one diode .model card before the .subckt is read, no more")
            kind = rest[1]
            if kind != "d" or (len(rest) > 2 and (rest[2] != "(" or rest[-1] != ")")):
                raise NetlistRefused(f"{where}: .model {rest[0]} {kind}: only a junction diode D(...) is modelled")
            body = rest[3:-1] if len(rest) > 2 else []
            positional, model = _keywords(body, where)
            unknown = [p for p in [*positional, *model] if p not in MODEL_PARAMETERS]
            if unknown:
                raise NetlistRefused(f"{where}: diode parameter {unknown[0]!r} is not modelled by eqspice")
            model_name = rest[0]
        elif head == ".subckt":
            if name is not None or len(rest) < 2:
                raise NetlistRefused(f"{where}: one .subckt NAME PORTS... is read, no more")
            name, ports, inside = rest[0], rest[1:], True
        elif head == ".ends":
            if not inside:
                raise NetlistRefused(f"{where}: .ends without .subckt")
            inside = False
        elif head == ".end":
            ended = True
        elif head.startswith("."):
            raise NetlistRefused(f"{where}: {head} refused (a subcircuit file holds .model, .subckt, .ends, .end only)")
        else:
            if not inside:
                raise NetlistRefused(f"{where}: element {head} outside the .subckt")
            kind = head[0]
            nodes_needed = {"r": 2, "d": 2, "g": 4}.get(kind)
            if nodes_needed is None:
                raise NetlistRefused(f"{where}: element {head} ({kind.upper()}) is not one eqspice models (R, D, G)")
            positional, keywords = _keywords(rest, where)
            if kind == "d":
                if len(positional) != 3 or set(keywords) - {"area"}:
                    raise NetlistRefused(f"{where}: diode {head}: give anode cathode model [area=A]")
                value = keywords.get("area", 1.0)
                keywords = {"model": positional[2]}
            else:
                if len(positional) != nodes_needed + 1 or keywords:
                    raise NetlistRefused(f"{where}: {head}: give {nodes_needed} nodes and one value")
                value = number(positional[-1], where)
            if head in elements:
                raise NetlistRefused(f"{where}: element {head} given twice")
            elements[head] = (card.line, positional[:nodes_needed], value, keywords)
    if name is None or inside:
        raise NetlistRefused(f"{source}: no complete .subckt ... .ends block")
    return Subcircuit(name, ports, model or {}, model_name or "", elements)


def conductances(sub: Subcircuit, circuit: Circuit, g_s: np.ndarray, source: str = "netlist") -> np.ndarray:
    """The memristor conductances (siemens, edge order) a subcircuit of ``circuit`` holds.

    ``g_s`` are the run's present conductances: they fix nothing but the
    antisymmetric gains expected of a non-reciprocal circuit (``a = delta G``
    with the file's G).  Every element, port, node and fixed value of the file
    must be the run's own; the refusal names the first that is not.
    """
    expected = design(circuit, g_s, sub.name)
    ports = list(expected.ports)
    hidden = [n for n in circuit.free_nodes if n not in set(circuit.output_nodes)]
    if sub.ports not in (ports, ports + hidden):
        raise NetlistRefused(f"{source}: ports of .subckt {sub.name} are not the run's ({', '.join(ports[:6])}, ...)")
    m = circuit.diode_model
    if len(circuit.diodes):
        want = {"is": m.is_a, "n": m.n, "rs": 0.0}
        for key, value in want.items():
            got = sub.model.get(key, 1.0 if key == "n" else None)
            if got is None or not np.isclose(got, value, rtol=1e-12, atol=0):
                raise NetlistRefused(
                    f"{source}: diode model {key.upper()} = {got} differs from the run's {value!r} "
                    "(diodes are fixed by the run's config; change it there)"
                )
    where = lambda name: f"{source}:{sub.elements[name][0]}"  # noqa: E731
    seen: set[str] = set()
    g_new = np.array(g_s, dtype=float)
    edge = {n.lower(): e for e, n in enumerate(_edge_names(circuit))}
    for block in expected.blocks:
        for k, name in enumerate(block.names):
            key = name.lower()
            if key not in sub.elements:
                raise NetlistRefused(f"{source}: element {name} of the run is missing")
            seen.add(key)
            _, nodes, value, keywords = sub.elements[key]
            want = [col[k].lower() for col in block.nodes]
            if nodes != want and not (block.kind == "resistor" and nodes == want[::-1]):
                raise NetlistRefused(f"{where(key)}: {name} joins {' '.join(nodes)}; the run's joins {' '.join(want)}")
            if block.kind == "resistor":
                if value <= 0:
                    raise NetlistRefused(f"{where(key)}: {name} = {value!r} ohm; a memristor needs R > 0")
                if key in edge:  # an unedited R = 1/G keeps the run's G to the last bit (1/(1/G) may not)
                    e = edge[key]
                    g_new[e] = g_new[e] if value == 1.0 / g_new[e] else 1.0 / value
                elif not np.isclose(value, block.values[k], rtol=1e-9):
                    raise NetlistRefused(f"{where(key)}: {name} = {value!r} ohm is fixed by the run at {block.values[k]!r}")
            elif block.kind == "diode":
                if keywords["model"] != m.name.lower():
                    raise NetlistRefused(f"{where(key)}: {name} uses model {keywords['model']}; the run's is {m.name}")
                if not np.isclose(value, block.values[k], rtol=1e-12):
                    raise NetlistRefused(
                        f"{where(key)}: {name} area {value!r} differs from the run's {block.values[k]!r} (fixed by its seed)"
                    )
    extra = [n for n in sub.elements if n not in seen]
    if extra:
        raise NetlistRefused(f"{where(extra[0])}: element {extra[0]} is not in the run's circuit")
    _check_couplings(sub, circuit, g_new, source)
    return g_new


def _edge_names(circuit: Circuit) -> list[str]:
    from eqspice.circuits.netlist import edge_names

    return edge_names(circuit)


def _check_couplings(sub: Subcircuit, circuit: Circuit, g_new: np.ndarray, source: str) -> None:
    """A non-reciprocal circuit's VCCS gains must be ``delta G`` of the file's own G."""
    if circuit.nonreciprocal is None:
        return
    for block in design(circuit, g_new, sub.name).blocks:
        if block.kind != "vccs":
            continue
        for name, want in zip(block.names, block.values):
            line, _, value, _ = sub.elements[name.lower()]
            if not np.isclose(value, want, rtol=1e-9, atol=0):
                raise NetlistRefused(
                    f"{source}:{line}: {name} = {value!r} S, but the run ties it to delta G = {want!r} S "
                    "of the file's resistor; change both or neither"
                )
