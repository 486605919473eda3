// Package examples shows axes in the web frameworks Go servers use, as
// runnable examples that are tested: gin, echo and chi. It is a module of
// its own so that the library never depends on a framework; nothing here
// is meant to be imported.
package examples
