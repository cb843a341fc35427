#!/usr/bin/env python3
"""Known-answer vectors for the MODP groups 14, 15, 16 (RFC 3526), computed
independently of the Rust code: the prime from its definition in RFC 3526
(p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + k)), pi from
Machin's formula with Python integers, and g^x mod p with Python's pow.
Writes modp_vectors.txt next to this file (the test reads that file)."""
import os

def pi_fixed(bits):
    # pi * 2^bits, Machin: pi = 16 atan(1/5) - 4 atan(1/239), with 64 guard bits.
    one = 1 << (bits + 64)
    def atan_inv(x):
        total, term, n, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total
    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 64

K = {2048: 124476, 3072: 1690314, 4096: 240904}
GROUP = {2048: 14, 3072: 15, 4096: 16}

def prime(n):
    return 2**n - 2**(n - 64) - 1 + 2**64 * (pi_fixed(n - 130) + K[n])

out = []
for n in (2048, 3072, 4096):
    p = prime(n)
    size = n // 8
    # Fixed private exponents (not secret: test vectors only), as long as
    # the exponents dodvpn draws: 256, 384 and 512 bits.
    xl = {2048: 32, 3072: 48, 4096: 64}[n]
    xi = int.from_bytes(bytes((i * 7 + n) & 0xFF for i in range(xl)), "big")
    xr = int.from_bytes(bytes((i * 13 + 5 + n // 8) & 0xFF for i in range(xl)), "big")
    gi, gr = pow(2, xi, p), pow(2, xr, p)
    s = pow(gr, xi, p)
    assert s == pow(gi, xr, p)
    h = lambda v, l: v.to_bytes(l, "big").hex()
    out += [f"group {GROUP[n]}", f"p {h(p, size)}", f"xi {h(xi, xl)}", f"xr {h(xr, xl)}",
            f"gi {h(gi, size)}", f"gr {h(gr, size)}", f"gir {h(s, size)}", ""]
with open(os.path.join(os.path.dirname(__file__), "modp_vectors.txt"), "w") as f:
    f.write("\n".join(out))
