#!/bin/sh
# mkcerts.sh DIR — test certificates for the TLS tests, made with the openssl CLI.
#
# Every key is ECDSA P-256; every certificate SHA-256-signed.  In DIR:
#   ca.pem ca.key                  test root CA, CN "squall test CA", 10 years
#   server.pem server.key          CA-signed, CN a.test, SAN localhost 127.0.0.1 ::1 a.test
#   server-chain.pem               server.pem then ca.pem
#   b.pem b.key                    CA-signed, CN b.test, SAN b.test (the second SNI name)
#   expired.pem expired.key        CA-signed, SAN localhost 127.0.0.1, valid 2020-01-01..02
#   selfsigned.pem selfsigned.key  self-signed (not by the CA), SAN localhost 127.0.0.1
#   client.pem client.key          CA-signed, CN "squall test client", clientAuth
#   inter.pem inter.key            intermediate CA signed by the root (pathlen 0)
#   leaf-inter.pem leaf-inter.key  signed by the intermediate, SAN localhost 127.0.0.1 ::1
#   leaf-inter-chain.pem           leaf-inter.pem then inter.pem (what a server should send)
#   done                           written last
#
# Idempotent: exits at once when DIR/done exists.  Concurrent runs on one DIR are serialised
# with flock(1).  POSIX sh (dash or bash).  Silent on success; on failure it prints the
# failing command and its output and exits non-zero.
set -eu

die() { echo "mkcerts.sh: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: mkcerts.sh DIR"; fi
dir=$1
[ -f "$dir/done" ] && exit 0
command -v openssl >/dev/null 2>&1 || die "the openssl command is missing (apt-get install openssl)"

mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd) || die "cannot enter $dir" # absolute: the work happens elsewhere
if command -v flock >/dev/null 2>&1; then
    exec 9>"$dir/.mkcerts.lock" || die "cannot open $dir/.mkcerts.lock"
    flock 9 || die "cannot lock $dir/.mkcerts.lock"
    [ -f "$dir/done" ] && exit 0 # another run finished while we waited
fi

tmp=$(mktemp -d "$dir/.mkcerts.XXXXXX") || die "cannot create a temporary directory in $dir"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# run CMD...: run quietly; on failure show what failed and everything it printed.
run() {
    if ! "$@" >run.log 2>&1; then
        echo "mkcerts.sh: failed: $*" >&2
        cat run.log >&2
        exit 1
    fi
}

cat >openssl.cnf <<'EOF'
# Self-contained: nothing is read from the system openssl.cnf.
[req]
distinguished_name = req_dn
string_mask = utf8only
[req_dn]

[root_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[inter_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1, DNS:a.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[b]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:b.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[expired]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

# No keyUsage here: a keyUsage without keyCertSign would stop OpenSSL from treating the
# certificate as self-signed, and then not even an explicit trust in it would verify.
[selfsigned]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

# `openssl ca`, used only for the expired certificate: `openssl x509 -req` (3.0) cannot set
# a validity period in the past, `openssl ca -startdate/-enddate` can.
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any_cn
unique_subject = no
copy_extensions = none
email_in_dn = no
[any_cn]
commonName = supplied
EOF
export OPENSSL_CONF="$tmp/openssl.cnf"

for k in ca inter server b expired selfsigned client leaf-inter; do
    run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$k.key"
done

run openssl req -config openssl.cnf -new -x509 -key ca.key -subj "/CN=squall test CA" \
    -days 3650 -sha256 -extensions root_ca -out ca.pem
run openssl req -config openssl.cnf -new -x509 -key selfsigned.key -subj "/CN=localhost" \
    -days 3650 -sha256 -extensions selfsigned -out selfsigned.pem

# issue NAME CN ISSUER EXTENSIONS
issue() {
    run openssl req -config openssl.cnf -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    serial=0x$(openssl rand -hex 16) # random 128 bits (req -x509 picks its own)
    run openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$serial" \
        -days 3650 -sha256 -extfile openssl.cnf -extensions "$4" -out "$1.pem"
}
issue server a.test ca server
issue b b.test ca b
issue client "squall test client" ca client
issue inter "squall test intermediate CA" ca inter_ca
issue leaf-inter localhost inter localhost

run openssl req -config openssl.cnf -new -key expired.key -subj "/CN=localhost" -out expired.csr
: >index.txt
openssl rand -hex 16 >serial
run openssl ca -config openssl.cnf -batch -notext -in expired.csr -out expired.pem \
    -startdate 20200101000000Z -enddate 20200102000000Z -extfile openssl.cnf -extensions expired

cat server.pem ca.pem >server-chain.pem
cat leaf-inter.pem inter.pem >leaf-inter-chain.pem

# Check what the tests will rely on before declaring the directory done.
run openssl verify -CAfile ca.pem -purpose sslserver server.pem b.pem
run openssl verify -CAfile ca.pem -purpose sslclient client.pem
run openssl verify -CAfile ca.pem -untrusted inter.pem -purpose sslserver leaf-inter.pem
run openssl verify -CAfile selfsigned.pem selfsigned.pem
if openssl verify -CAfile ca.pem expired.pem >run.log 2>&1; then
    die "expired.pem verified, but it should have expired"
fi
grep -q "certificate has expired" run.log || { cat run.log >&2; die "expired.pem: unexpected failure"; }

for f in ca inter server b expired selfsigned client leaf-inter; do
    chmod 600 "$f.key"
    mv -f "$f.key" "$f.pem" "$dir/"
done
mv -f server-chain.pem leaf-inter-chain.pem "$dir/"
: >"$dir/done"
