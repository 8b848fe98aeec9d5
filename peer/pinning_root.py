"""The shared issuer of every pacsnode node certificate. It confers no trust.

Python's ``ssl`` module cannot accept a client certificate without verifying
its chain, and peers are configured by fingerprint only. So every node's own
certificate is issued by this well-known root, whose private key is public
on purpose: the TLS handshake then verifies any pacsnode certificate and
proves that the other side holds the certificate's private key, and the
node accepts a connection only when that certificate's SHA-256 fingerprint
is one it has pinned (:mod:`peer.tls`). Anyone can mint a certificate under
this root; nobody can mint one with a pinned fingerprint.
"""

ROOT_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtW7o2snTy2N90EJ6
m5upbSH/9aaL3yx6nrvmqPcTYZChRANCAASRWCnLKh3nDk8hjQPIxvd9bzKN+ujW
SIq65fyw8A0tJg7aBXNMuAGbZaTlhTbkAVFRATBA1oacFqqzqwRLsXMc
-----END PRIVATE KEY-----
"""

ROOT_CERT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBbTCCAROgAwIBAgIBATAKBggqhkjOPQQDAjArMSkwJwYDVQQDDCBwYWNzbm9k
ZSBwaW5uaW5nIHJvb3QgKG5vIHRydXN0KTAgFw0yNjAxMDEwMDAwMDBaGA8yMTI1
MTIwODAwMDAwMFowKzEpMCcGA1UEAwwgcGFjc25vZGUgcGlubmluZyByb290IChu
byB0cnVzdCkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASRWCnLKh3nDk8hjQPI
xvd9bzKN+ujWSIq65fyw8A0tJg7aBXNMuAGbZaTlhTbkAVFRATBA1oacFqqzqwRL
sXMcoyYwJDASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBBjAKBggq
hkjOPQQDAgNIADBFAiByBI6Ez03zuLLbRC7aXZvjZ9U3gQOuU9bLfRBjVTB1zgIh
AMqMKSxM4/YdtD39C+XhUtkCPAYwxi48y+byLcZ/0Ka0
-----END CERTIFICATE-----
"""
