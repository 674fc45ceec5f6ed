module example.invalid/pyspy/bindings/go

go 1.19
