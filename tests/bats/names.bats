#!/usr/bin/env bats
# SPEC 3, Names: states and transactions (files in a state, .txn/T) have
# names of 1-255 bytes (ENAMETOOLONG past), not beginning with '.' and
# without control bytes (EINVAL), wherever a name enters: mkdir, rename,
# create, mkdir .txn/T, .txn/T/NAME.  So a line of .events is one event.

load helpers

setup() {
	ks_mount
	S=$(ks_state s)
	L255=$(printf 'a%.0s' $(seq 255))
	# Each bad name, then the errno it gets.
	BAD=(
		$'x\ncommit other 99' EINVAL
		$'\n' EINVAL
		$'tab\there' EINVAL
		$'del\x7f' EINVAL
		$'\x01one' EINVAL
		$'unit\x1fsep' EINVAL
		"$(printf 'n%.0s' $(seq 256))" ENAMETOOLONG
		"$(printf 'm%.0s' $(seq 1100))" ENAMETOOLONG
	)
}

# each_bad OP ARGS...: runs assert_errno for every bad name, with @ in
# ARGS replaced by the name; reports every failure, not only the first.
each_bad() {
	local i n want got bad=0 arg
	local -a args
	for ((i = 0; i < ${#BAD[@]}; i += 2)); do
		n=${BAD[i]}
		want=${BAD[i + 1]}
		args=()
		for arg in "$@"; do
			args+=("${arg//@/$n}")
		done
		got=$(ks_errno "${args[@]}")
		if [ "$got" != "$want" ]; then
			printf '%s with the name %q (%d bytes): %s, not %s\n' \
				"$1" "$n" "${#n}" "$got" "$want"
			bad=1
		fi
	done
	return $bad
}

# only_entries DIR NAME...: DIR lists exactly NAME... (in any order).
only_entries() {
	local dir=$1 got want
	shift
	got=$(ls -A "$dir" | sort | tr '\n' ' ')
	want=
	[ $# -eq 0 ] || want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	assert_eq "$got" "$want" "entries of $dir"
}

@test "mkdir NAME: control bytes EINVAL, past 255 bytes ENAMETOOLONG; 255 bytes is a name" {
	each_bad mkdir "$MNT/@"
	only_entries "$MNT" .commit .events .shm .stats .txn s
	mkdir "$MNT/$L255"
	assert_version "$MNT/$L255" 0
	run mkdir "$MNT/"$'x\ncommit other 99'
	assert_eq "$status" 1 "mkdir(1) of a name with a newline"
}

@test "mv STATE NAME: the same rules; the state keeps its name" {
	echo 5 >"$S/data"
	each_bad rename "$S" "$MNT/@"
	each_bad noreplace "$S" "$MNT/@"
	assert_errno EINVAL rename "$S" "$MNT/.s"
	only_entries "$MNT" .commit .events .shm .stats .txn s
	assert_file "$S/data" '5\n'
	assert_errno OK rename "$S" "$MNT/$L255"
	assert_file "$MNT/$L255/data" '5\n'
}

@test "a transaction file (create, open O_CREAT, touch): the same rules, and no leading '.'" {
	each_bad create "$S/@"
	each_bad open "$S/@" cwt
	each_bad mknod "$S/@" reg
	assert_errno EINVAL create "$S/.t"
	assert_errno EINVAL open "$S/.t" cwt
	run touch "$S/"$'t\tab'
	assert_eq "$status" 1 "touch of a name with a tab"
	only_entries "$S" data every version
	# The longest name is a transaction like any other.
	echo 9 >"$S/$L255"
	mv "$S/$L255" "$S/data"
	assert_file "$S/data" '9\n'
}

@test "mv T U in a state: the same rules; T stays as it was" {
	echo t >"$S/t"
	each_bad rename "$S/t" "$S/@"
	each_bad noreplace "$S/t" "$S/@"
	assert_errno EINVAL rename "$S/t" "$S/.t"
	only_entries "$S" data every t version
	assert_file "$S/t" 't\n'
	assert_errno OK rename "$S/t" "$S/$L255"
	assert_file "$S/$L255" 't\n'
}

@test "mkdir .txn/T: the same rules" {
	each_bad mkdir "$MNT/.txn/@"
	assert_errno EINVAL mkdir "$MNT/.txn/.t"
	only_entries "$MNT/.txn"
	mkdir "$MNT/.txn/$L255"
	only_entries "$MNT/.txn" "$L255"
}

@test ".txn/T/NAME: a bad name is EINVAL or ENAMETOOLONG when created, ENOENT or ENAMETOOLONG when looked up" {
	mkdir "$MNT/.txn/T"
	each_bad create "$MNT/.txn/T/@"
	each_bad open "$MNT/.txn/T/@" cwt
	assert_errno ENOENT open "$MNT/.txn/T/"$'x\ny' r
	assert_errno ENAMETOOLONG open "$MNT/.txn/T/$(printf 'n%.0s' $(seq 256))" r
	assert_errno ENOENT create "$MNT/.txn/T/nosuchstate"
	only_entries "$MNT/.txn/T"
	# A good name still joins.
	echo s >"$MNT/.txn/T/s"
	mv "$MNT/.txn/T" "$MNT/.commit/"
	assert_file "$S/data" 's\n'
}

@test "any call on a name past 255 bytes: ENAMETOOLONG, as statfs's NAME_MAX says" {
	local n
	n=$(printf 'n%.0s' $(seq 256))
	assert_eq "$(stat -f -c %l "$MNT")" 255 "statfs namelen"
	assert_eq "$(getconf NAME_MAX "$MNT")" 255 "getconf NAME_MAX"
	assert_errno ENAMETOOLONG stat "$MNT/$n"
	assert_errno ENAMETOOLONG stat "$S/$n"
	assert_errno ENAMETOOLONG rmdir "$MNT/$n"
	assert_errno ENAMETOOLONG unlink "$S/$n"
	assert_errno ENAMETOOLONG rename "$S/$n" "$S/t"
	assert_errno ENAMETOOLONG stat "$MNT/.txn/$n"
	# A name with a control byte that cannot exist is simply not there.
	assert_errno ENOENT stat "$MNT/"$'x\ny'
	assert_errno ENOENT stat "$S/"$'x\ny'
}

@test ".events: a name with a newline never forges a line" {
	ks_py -m ksmount "$MNT" <<-'EOF'
		import re
		mnt = sys.argv[1]
		ev = EventReader(mnt)
		forged = "x\ncommit other 99"
		for attempt in (lambda: os.mkdir(os.path.join(mnt, forged)),
		                lambda: os.rename(os.path.join(mnt, "s"),
		                                  os.path.join(mnt, forged)),
		                lambda: os.close(os.open(os.path.join(mnt, "s", forged),
		                                         os.O_CREAT | os.O_WRONLY)),
		                lambda: os.mkdir(os.path.join(mnt, ".txn", forged))):
		    try:
		        attempt()
		        fail("a name with a newline was taken")
		    except OSError as e:
		        check(e.errno == errno.EINVAL, "errno %d, not EINVAL" % e.errno)
		os.mkdir(os.path.join(mnt, "other"))
		with open(os.path.join(mnt, "s", "data"), "w") as f:
		    f.write("1\n")
		lines = []
		deadline = time.time() + 20
		while "commit s 1" not in lines:
		    check(time.time() < deadline, "no 'commit s 1' in %r" % lines)
		    lines.append(ev.line(timeout=20))
		check(lines == ["create other", "commit s 1"],
		      "the lines of .events: %r" % lines)
		for l in lines:
		    check(re.fullmatch(r"(create|delete) [^\x00-\x1f\x7f]+|commit [^\x00-\x1f\x7f]+ [0-9]+", l),
		          "a malformed line %r" % l)
	EOF
}

@test "libkstate: kstate_subscribe refuses a bad name (EINVAL, ENAMETOOLONG) before touching the mount" {
	: "${KSTATE_BUILD:=$KS_ROOT/build}"
	run timeout 60 "$KSTATE_BUILD/tests/client/test_names" "$MNT"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "test_names: ok"
}

@test "kstate set/get/update/wait NAME: a bad name is refused with a message that says why, on one line" {
	: "${KSTATE:=$KS_ROOT/build/client/kstate}"
	local n cmd
	for cmd in "set @ v" "get @" "update @ -- cat" "wait @ --timeout 1"; do
		# shellcheck disable=SC2086
		set -- ${cmd}
		run "$KSTATE" "$1" "$MNT/"$'x\ncommit other 99' "${@:3}"
		assert_eq "$status" 3 "kstate $cmd with a newline: status; output: $output"
		assert_eq "${#lines[@]}" 1 "kstate $cmd: one line of message: $output"
		assert_contains "$output" 'x\ncommit other 99: not a state name'
		run "$KSTATE" "$1" "$MNT/"$'del\x7f' "${@:3}"
		assert_eq "$status" 3 "kstate $cmd with 0x7f: status; output: $output"
		assert_contains "$output" 'del\x7f: not a state name: it holds a control byte'
		n=$(printf 'n%.0s' $(seq 256))
		run "$KSTATE" "$1" "$MNT/$n" "${@:3}"
		assert_eq "$status" 3 "kstate $cmd with 256 bytes: status; output: $output"
		assert_contains "$output" "longer than 255 bytes"
	done
	only_entries "$MNT" .commit .events .shm .stats .txn s
	run "$KSTATE" set "$MNT/$L255" v
	assert_eq "$status" 0 "kstate set of a 255-byte name; output: $output"
}
