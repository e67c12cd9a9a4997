"""Text for a terminal from outside values (the cluster, the policy, an HTTP answer)."""


def printable(value: object) -> str:
    """`value` as text with every non-printable character (an escape sequence's ESC, a line
    break, a bidirectional override) shown as `?`, so it cannot drive the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(value))
