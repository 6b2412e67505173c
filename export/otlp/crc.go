package otlp

// crc32Combine returns the CRC-32 (IEEE) of the concatenation of two
// pieces of data from the CRC-32 of each, crc1 and crc2, and the length of
// the second, n2: a request compressed from parts compressed ahead has lost
// the bytes the gzip trailer's CRC is computed over, but not their CRCs.
//
// A CRC is the remainder of the data's polynomial modulo the generator;
// appending n2 bytes multiplies the first piece's polynomial by x^(8·n2),
// so crc(a·b) = crc1·x^(8·n2) mod P + crc2, with polynomials over GF(2) in
// the reflected bit order hash/crc32 uses (bit 31 is x^0).
func crc32Combine(crc1, crc2 uint32, n2 int) uint32 {
	if n2 <= 0 {
		return crc1
	}
	return mulModP(xPow8n(uint64(n2)), crc1) ^ crc2
}

// crcPoly is the IEEE generator, reflected (hash/crc32.IEEE).
const crcPoly = 0xedb88320

// mulModP returns a·b mod P.
func mulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		// b·x mod P
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n returns x^(8·n) mod P, by squaring: x^8 is the first power, and
// each bit of n multiplies in x^(8·2^k).
func xPow8n(n uint64) uint32 {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 23 // x^8
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			p = mulModP(sq, p)
		}
		sq = mulModP(sq, sq)
	}
	return p
}
