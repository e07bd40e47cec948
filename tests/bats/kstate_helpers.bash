# Helpers for the tests of the kstate command (kstate_*.bats): load with
# `load kstate_helpers` (it loads helpers).
#
#   ks_need_kstate   fails the test unless $KSTATE (default: the build's)
#                    can be run
#   kstate ARGS...   the command, bounded to 60 s

load helpers

ks_need_kstate() {
	: "${KSTATE:=$KS_ROOT/build/client/kstate}"
	[ -x "$KSTATE" ] || {
		echo "kstate not found: $KSTATE"
		return 1
	}
}

kstate() {
	timeout 60 "$KSTATE" "$@"
}
