"""`policy_server`: serves a policy backend over the openpi websocket protocol (`vla-ros serve`)."""
import sys


def main(args=None):
    print(
        "policy_server: not built yet; the openpi-compatible policy server arrives with issue #6",
        file=sys.stderr,
    )
    sys.exit(2)


if __name__ == "__main__":
    main()
