//go:build !static

package pyspy

// The default build links libpyspy.so through pyspy.pc, whose rpath lets the program find the
// library at run time without LD_LIBRARY_PATH.

/*
#cgo pkg-config: pyspy
*/
import "C"
