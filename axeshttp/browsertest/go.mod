module github.com/axes-go/axes/axeshttp/browsertest

go 1.26

require github.com/axes-go/axes v0.0.0-00010101000000-000000000000

replace github.com/axes-go/axes => ../..
