#!/usr/bin/env bats
# SPEC 2 and 10: kstatefs mounted by mount(8), /etc/fstab and systemd, and
# the examples it ships (examples/fstab, examples/mnt-state.mount).
#
# mount(8) gives its helpers no PATH: mount.fuse3 runs `kstatefs` through
# /bin/sh, which then searches its default path, /usr/local/sbin first.
# So each test that calls mount(8) runs its body (ks_ns) in a mount
# namespace of its own, in which an empty directory hides /usr/local/sbin
# but for one `kstatefs`: a script that records its arguments and runs
# $KSTATEFS.  The host's directories and mount table are not touched, and
# the test's kstatefs mounts exist only in that namespace.

load helpers

setup() {
	T=$BATS_TEST_TMPDIR
	M=$T/mnt
	S=$T/store
	mkdir -p "$M" "$T/sbin"
	local -a env
	mapfile -t env < <(ks_san_env)
	{
		echo '#!/bin/bash'
		printf 'printf "%%s\\n" "$@" >>%q\n' "$T/args"
		printf 'exec env %s %q "$@"\n' "$(printf '%q ' "${env[@]}")" "$KSTATEFS"
	} >"$T/sbin/kstatefs"
	chmod +x "$T/sbin/kstatefs"
	# A daemon that outlives its namespace's shell still serves $M there:
	# teardown finds it by its arguments and stops it.
	KS_DAEMON_MNTS+=("$M")
}

teardown() {
	local bad=0
	ks_teardown || bad=1
	ks_sanitizer_check || bad=1
	return $bad
}

# ks_ns: runs the bash script on standard input in a mount namespace of its
# own (see the top), with T, M, S, KSTATEFS and REPO set and these
# functions: ns_unmount DIR (umount, then wait for the daemon to exit),
# ns_mounted DIR, ns_opts DIR (the mount's options, from mountinfo).
# Whatever is still mounted at the end is unmounted.
ks_ns() {
	local body
	body=$(cat)
	T=$T M=$M S=$S KSTATEFS=$KSTATEFS REPO=$KS_ROOT \
		timeout 120 unshare --mount --propagation private bash -c '
		set -euo pipefail
		mount --bind "$T/sbin" /usr/local/sbin
		ns_mounted() {
			awk -v m="$1" '"'"'$5 == m { f = 1 } END { exit !f }'"'"' /proc/self/mountinfo
		}
		ns_opts() {
			awk -v m="$1" '"'"'$5 == m { print $6 "," $NF }'"'"' /proc/self/mountinfo
		}
		ns_daemon() {
			local p
			for p in /proc/[0-9]*; do
				case $(tr "\0" " " 2>/dev/null <"$p/cmdline") in
				*kstatefs*" $1 "*) return 0 ;;
				esac
			done
			return 1
		}
		ns_unmount() {
			local i
			# Once: the writes the daemon'"'"'s notifier makes after a
			# commit go through a copy of the mount of its own
			# (kstatefs(1), NOTES), which never makes it busy.
			umount "$1"
			for ((i = 0; i < 400; i++)); do
				ns_daemon "$1" || return 0
				sleep 0.05
			done
			echo "kstatefs still serving $1 20 s after umount"
			return 1
		}
		ns_cleanup() {
			cd /
			while read -r m; do
				umount "$m" 2>/dev/null || umount -l "$m"
			done < <(awk '"'"'{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "fuse.kstatefs") print $5 }'"'"' /proc/self/mountinfo)
		}
		trap ns_cleanup EXIT
		'"$body"
}

# ks_args: the arguments mount.fuse3 gave kstatefs, one a line.
ks_args() {
	cat "$T/args" 2>/dev/null || echo "kstatefs was never run from /usr/local/sbin"
}

@test "mount -t fuse.kstatefs kstatefs DIR -o store=S: mounted through mount.fuse3; a state survives a remount" {
	run ks_ns <<-'EOF'
		mount -t fuse.kstatefs kstatefs "$M" -o "store=$S"
		grep -q "^kstatefs $M fuse.kstatefs " /proc/self/mounts
		mkdir "$M/kept"
		echo 42 >"$M/kept/data"
		ns_unmount "$M"
		ns_mounted "$M" && { echo "still mounted"; exit 1; }
		mount -t fuse.kstatefs kstatefs "$M" -o "store=$S"
		cat "$M/kept/data" "$M/kept/version"
		ns_unmount "$M"
	EOF
	assert_eq "$status" 0 "status; output: $output; kstatefs called with: $(ks_args)"
	assert_eq "$output" $'42\n1'
	[ -f "$S/lock" ] || { echo "store=$S ignored"; return 1; }
	# mount(8) -> mount.fuse3 -> kstatefs SOURCE MOUNTPOINT -o OPTIONS
	assert_eq "$(head -n 4 "$T/args" | tr '\n' ' ')" \
		"kstatefs $M -o rw,store=$S,dev,suid " "how mount.fuse3 ran kstatefs"
}

@test "an option with '/' and '=' in it reaches kstatefs unharmed" {
	run ks_ns <<-'EOF'
		mount -t fuse.kstatefs kstatefs "$M" -o "store=$T/a=b/c,max_size=8192"
		mkdir "$M/s"
		head -c 8000 /dev/zero >"$M/s/data"
		stat -c %s "$M/s/data"
		ns_unmount "$M"
	EOF
	assert_eq "$status" 0 "status; output: $output; kstatefs called with: $(ks_args)"
	assert_eq "$output" 8000 "max_size=8192 after a store= with '/' and '='"
	[ -f "$T/a=b/c/lock" ] || { echo "store not made at $T/a=b/c"; ls -R "$T"; return 1; }
}

@test "every option mount(8), fstab and systemd pass either works or is ignored" {
	# Each one alone, after the store, as an fstab line would give it.
	run ks_ns <<-'EOF'
		n=0
		for o in defaults rw dev nodev suid nosuid exec noexec atime noatime \
			relatime norelatime strictatime nodiratime lazytime iversion \
			mand nomand silent loud sync async dirsync auto noauto nofail \
			_netdev user users nouser owner group comment=kstatefs \
			x-systemd.automount x-systemd.requires=/var \
			x-systemd.mount-timeout=30 x-mount.mkdir default_permissions \
			allow_other; do
			if ! err=$(mount -t fuse.kstatefs kstatefs "$M" -o "store=$S,$o" 2>&1); then
				echo "-o $o: mount failed: $err"
				continue
			fi
			n=$((n + 1))
			mkdir "$M/s$n"
			echo "$o" >"$M/s$n/data"
			got=$(cat "$M/s$n/data")
			[ "$got" = "$o" ] || echo "-o $o: data reads '$got'"
			ns_unmount "$M"
		done
		# The flags that mean something still do.
		mount -t fuse.kstatefs kstatefs "$M" -o "store=$S,nodev,nosuid,noexec,noatime"
		echo "flags $(ns_opts "$M")"
		ns_unmount "$M"
		mount -t fuse.kstatefs kstatefs "$M" -o "store=$S,ro"
		mkdir "$M/new" 2>/dev/null && echo "mkdir on a ro mount succeeded"
		cat "$M/s1/data"
		ns_unmount "$M"
	EOF
	assert_eq "$status" 0 "status; output: $output"
	local flags
	flags=$(grep '^flags ' <<<"$output")
	assert_contains "$flags" nodev "nodev"
	assert_contains "$flags" nosuid "nosuid"
	assert_contains "$flags" noexec "noexec"
	assert_contains "$flags" noatime "noatime"
	assert_eq "$(grep -v '^flags ' <<<"$output")" defaults "only the ro mount's read, nothing failed"
}

@test "kstatefs itself ignores fstab's own options (run without mount(8))" {
	ks_mount -o defaults,nofail,_netdev,auto,relatime,lazytime,x-systemd.automount,comment=x
	mkdir "$MNT/s"
	assert_version "$MNT/s" 0
}

@test "examples/fstab, its store and mountpoint changed, through mount -T FILE DIR; with nofail, _netdev, x-systemd.*" {
	local line
	line=$(grep -v '^#' "$KS_ROOT/examples/fstab" | grep .)
	# The shipped line, exactly as documented.
	assert_eq "$(tr -s ' ' <<<"$line")" \
		"kstatefs /mnt/state fuse.kstatefs store=/var/lib/kstatefs,allow_other 0 0"
	line=${line//\/mnt\/state/$M}
	line=${line//\/var\/lib\/kstatefs/$S}
	printf '%s\n' "$line" >"$T/fstab"
	sed "s|allow_other|allow_other,nofail,_netdev,noatime,x-systemd.automount|" \
		"$T/fstab" >"$T/fstab2"
	run ks_ns <<-'EOF'
		mount -T "$T/fstab" "$M"
		ns_opts "$M"
		mkdir "$M/kept"
		echo 7 >"$M/kept/data"
		ns_unmount "$M"
		mount -T "$T/fstab2" "$M"
		cat "$M/kept/data"
		ns_unmount "$M"
		# mount -a -T: every line of the file, as at boot
		mount -a -T "$T/fstab2"
		cat "$M/kept/version"
		ns_unmount "$M"
	EOF
	assert_eq "$status" 0 "status; output: $output; kstatefs called with: $(ks_args)"
	assert_contains "${lines[0]}" allow_other "the fstab line's allow_other"
	assert_eq "${lines[1]}" 7 "the state after a remount by the fstab"
	assert_eq "${lines[2]}" 1 "version after mount -a"
	[ -f "$S/lock" ] || { echo "store option ignored"; return 1; }
}

@test "examples/mnt-state.mount: systemd-analyze verify passes; what it mounts works" {
	local unit=$KS_ROOT/examples/mnt-state.mount
	local what where type options
	what=$(sed -n 's/^What=//p' "$unit")
	where=$(sed -n 's/^Where=//p' "$unit")
	type=$(sed -n 's/^Type=//p' "$unit")
	options=$(sed -n 's/^Options=//p' "$unit")
	assert_eq "$what" kstatefs "What="
	assert_eq "$where" /mnt/state "Where="
	assert_eq "$type" fuse.kstatefs "Type="
	assert_eq "$options" store=/var/lib/kstatefs,allow_other "Options="
	grep -q '^WantedBy=' "$unit" || { echo "no [Install] WantedBy="; return 1; }

	# Documentation=man:kstatefs(1) is checked by running man: point it at
	# this tree's page.  Any warning fails too.
	mkdir -p "$T/man/man1"
	ln -s "$KS_ROOT/man/kstatefs.1" "$T/man/man1/kstatefs.1"
	cp "$unit" "$T/mnt-state.mount"
	run env MANPATH="$T/man" systemd-analyze verify "$T/mnt-state.mount"
	assert_eq "$status" 0 "systemd-analyze verify; output: $output"
	assert_eq "$output" "" "systemd-analyze verify's warnings"
	# verify does check: a Where= that is not the unit's name fails.
	sed 's|^Where=.*|Where=/mnt/other|' "$unit" >"$T/mnt-state.mount"
	run env MANPATH="$T/man" systemd-analyze verify "$T/mnt-state.mount"
	[ "$status" -ne 0 ] || { echo "verify passed a Where= naming another unit"; return 1; }

	# What systemd runs for the unit (mount What Where -t Type -o
	# Options), with this test's store and mountpoint.
	echo "${options//\/var\/lib\/kstatefs/$S}" >"$T/options"
	echo "$what $type" >"$T/what"
	run ks_ns <<-'EOF'
		read -r what type <"$T/what"
		mount "$what" "$M" -t "$type" -o "$(cat "$T/options")"
		ns_opts "$M"
		mkdir "$M/s"
		ns_unmount "$M"
	EOF
	assert_eq "$status" 0 "status; output: $output; kstatefs called with: $(ks_args)"
	assert_contains "$output" allow_other
	[ -f "$S/lock" ] || { echo "the unit's store option ignored"; return 1; }
}

@test "kstatefs(1) and README show the shipped fstab line and unit as they are" {
	local f line bad=0 man
	man=$(sed 's/\\-/-/g' "$KS_ROOT/man/kstatefs.1")
	for f in fstab mnt-state.mount; do
		while IFS= read -r line; do
			case $line in '' | '#'*) continue ;; esac
			grep -Fxq -- "$line" <<<"$man" || { echo "kstatefs(1) lacks: $line"; bad=1; }
			grep -Fxq -- "$line" "$KS_ROOT/README.md" || { echo "README.md lacks: $line"; bad=1; }
		done <"$KS_ROOT/examples/$f"
	done
	return $bad
}

@test "meson installs the examples under share/doc/kstatefs and the unit under lib/systemd/system" {
	: "${KSTATE_BUILD:=$KS_ROOT/build}"
	local root=$T/root prefix
	meson install -C "$KSTATE_BUILD" --no-rebuild --destdir "$root" >"$T/install.log" 2>&1 ||
		{ cat "$T/install.log"; return 1; }
	prefix=$(meson introspect --buildoptions "$KSTATE_BUILD" |
		python3 -c 'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
	cmp "$KS_ROOT/examples/fstab" "$root$prefix/share/doc/kstatefs/fstab"
	cmp "$KS_ROOT/examples/mnt-state.mount" "$root$prefix/share/doc/kstatefs/mnt-state.mount"
	cmp "$KS_ROOT/examples/mnt-state.mount" "$root$prefix/lib/systemd/system/mnt-state.mount"
}
