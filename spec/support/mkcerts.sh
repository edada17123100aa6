#!/bin/sh
# Makes the TLS specs' certificates in directory $1 (P-256 keys: fast):
#   ca          a CA (ca.pem, ca.key)
#   server      localhost + 127.0.0.1, from ca
#   other       other.test, from ca (SNI, host name mismatch)
#   expired     localhost + 127.0.0.1, from ca, expired yesterday
#   self        localhost + 127.0.0.1, self-signed
#   client      a client certificate, from ca
#   inter       an intermediate CA, from ca; leaf (localhost) from inter,
#               so a client trusting ca needs inter sent (extraCertChain)
set -e
d=$1
cd "$d"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
csr() { openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null; }
sign() { # name issuer days extfile
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -days "$3" -extfile "$4" -out "$1.pem" 2>/dev/null
}
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > local.ext
printf 'subjectAltName=DNS:other.test\n' > other.ext
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign\n' > ca.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
key ca
openssl req -x509 -new -key ca.key -subj "/CN=Loom Test CA" -days 30 -out ca.pem 2>/dev/null
key server; csr server localhost; sign server ca 30 local.ext
key other; csr other other.test; sign other ca 30 other.ext
key expired; csr expired localhost; sign expired ca -1 local.ext
key self; csr self localhost
openssl x509 -req -in self.csr -signkey self.key -days 30 -extfile local.ext -out self.pem 2>/dev/null
key client; csr client "loom client"; sign client ca 30 client.ext
key inter; csr inter "Loom Intermediate"; sign inter ca 30 ca.ext
key leaf; csr leaf localhost; sign leaf inter 30 local.ext
rm -f ./*.csr ./*.srl ./*.ext
