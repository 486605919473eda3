module github.com/axes-go/axes/axeshttp/browsertest

go 1.25.0

require (
	github.com/axes-go/axes v0.1.0
	github.com/chromedp/cdproto v0.159.0
	github.com/chromedp/chromedp v0.23.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
)

// For development outside the workspace (GOWORK=off) only: builds that use
// this module as a dependency ignore replace directives and take the root at
// the version required above (see RELEASING.md).
replace github.com/axes-go/axes => ../..
