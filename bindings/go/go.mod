module github.com/pyspy/pyspy/bindings/go

go 1.19
