/*
 * A stand-in for Windows' bcryptprimitives.dll, which Debian's Wine 8 lacks:
 * Go 1.26 programs take their random bytes from its ProcessPrng. This one
 * fills the buffer from RtlGenRandom (advapi32's SystemFunction036). Only for
 * running logpump's Windows test binaries under Wine; a real Windows has the
 * system library.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG n = size > 0x40000000 ? 0x40000000 : (ULONG)size;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		size -= n;
	}
	return TRUE;
}
