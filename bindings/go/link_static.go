//go:build static

package pyspy

// With `-tags static` the package links libpyspy.a (pyspy-static.pc): the program does not
// need libpyspy at run time.

/*
#cgo pkg-config: pyspy-static
*/
import "C"
