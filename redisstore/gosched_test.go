package redisstore

import "runtime"

func runtime_Gosched() { runtime.Gosched() }
