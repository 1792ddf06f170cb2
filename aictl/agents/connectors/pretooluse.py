"""Claude Code's PreToolUse hook: hands the call to the run's decision socket and prints the verdict.

    python -I -S pretooluse.py SOCKET      (stdin: the hook's JSON; stdout: the hook's JSON answer)

Claude Code starts this once per tool call, so it imports only the standard library
(never aictl: a full import costs ~100x the answer) and runs with -I -S (no site, no
user environment). It does not judge anything itself: the executor's hook server
(hookserver.py) maps the tool to policy actions, decides them against the run's pinned
policy and records every decision; this file only carries bytes both ways.

It imports only `sys` and `_socket` (the C module under `socket`): `json`, `socket` and the `re`
and `enum` they pull in would triple the start-up (~11 ms of imports against ~8 ms for the bare
interpreter). So the socket answers in plain text (`allow`, or `deny` and the reason on the next
line) and the hook's JSON is written here by hand (`_json_str`).

Fail closed: Claude Code lets a call through when a hook exits non-zero (other than 2)
or prints nothing, so every failure here - socket missing, server gone, timeout, a
malformed answer - prints a deny and exits 0. (Python's own "can't open file" exits 2,
which Claude Code also reads as a block.)
"""

import _socket
import sys

# The hook's input is a tool call (a Write carries a whole file): past this it is refused, not truncated.
MAX_INPUT_BYTES = 4 * 1024 * 1024
MAX_ANSWER_BYTES = 64 * 1024
# Under the hook timeout aictl gives Claude Code (hookserver.HOOK_TIMEOUT_S), so the deny is ours, not a kill.
TIMEOUT_S = 20.0


def _json_str(text: str) -> str:
    """A JSON string literal: quote, backslash and control characters escaped (the rest is UTF-8 as is)."""
    out = []
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def answer(decision: str, reason: str) -> str:
    if decision != "deny":  # no decision: Claude Code's own permission rules still apply after ours
        return "{}"
    return (
        '{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", '
        '"permissionDecisionReason": ' + _json_str(reason) + "}}"
    )


def parse(reply: bytes) -> tuple[str, str]:
    """The server's answer: `allow`, or `deny` and the reason on the next line."""
    head, _, reason = reply.decode("utf-8").partition("\n")
    if head not in ("allow", "deny"):
        raise ValueError("malformed answer")
    return head, reason


def ask(path: str, data: bytes) -> tuple[str, str]:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        sock.connect(path)
        sock.sendall(data)
        sock.shutdown(_socket.SHUT_WR)
        chunks, size = [], 0
        while size <= MAX_ANSWER_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        sock.close()
    return parse(b"".join(chunks))


def main(argv: list[str]) -> int:
    try:
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            decision, reason = "deny", f"aictl: tool call over {MAX_INPUT_BYTES} bytes, refused unchecked"
        else:
            decision, reason = ask(argv[1], data)
    except BaseException as e:  # noqa: BLE001 - whatever went wrong, the call must not go through unchecked
        decision, reason = "deny", f"aictl: the policy check could not be made ({type(e).__name__}), so it is denied"
    sys.stdout.buffer.write((answer(decision, reason) + "\n").encode("utf-8", "replace"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
