// Package exepages gives back the memory mappings of the agent's own code
// that only starting up needed.
//
// A Go binary's code and read-only data are mapped from the executable
// file. Starting the agent (package initialisers, parsing the
// configuration, building the pipeline) touches pages all over the file,
// and the kernel maps each touched page with its neighbours (fault-around,
// 64 KiB), so about 13 MiB of the file is mapped before the first line is
// read, much of it code that runs once. Those pages count in the process's
// RSS, and the kernel reclaims mapped executable pages only after other page
// cache.
//
// Release unmaps them from the process (madvise MADV_DONTNEED on the
// executable's read-only private mappings). The file's pages stay in the
// page cache; a page the agent uses again is mapped again on first touch by
// a minor fault, without I/O unless the kernel reclaimed it meanwhile.
// Nothing is written to these mappings, so nothing is lost by dropping them.
package exepages

// Stats says what a Release did.
type Stats struct {
	Advised   int64 // bytes of mappings advised
	RSSBefore int64 // the process's file-backed resident bytes (RssFile) before; -1 if unknown
	RSSAfter  int64 // and after
	Mappings  int   // read-only mappings of the executable found
}
