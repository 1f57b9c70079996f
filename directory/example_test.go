package directory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/rtcrelay/rtcrelay/directory"
)

// An origin registers a published stream; an edge sharing the directory finds it. With
// "redis://127.0.0.1:6379/0" instead of "memory" (and no Store) the two would be separate processes.
func ExampleOpen() {
	ctx := context.Background()
	store := directory.NewMemoryStore()
	origin, err := directory.Open(ctx, "memory", directory.Options{ServerID: "origin-1", URI: "ws://127.0.0.1:8080", Store: store})
	if err != nil {
		panic(err)
	}
	defer origin.Close()
	edge, err := directory.Open(ctx, "memory", directory.Options{ServerID: "edge-1", URI: "ws://127.0.0.1:9080", Store: store})
	if err != nil {
		panic(err)
	}
	defer edge.Close()

	if err := origin.Register(ctx, directory.Entry{Name: "cam1"}); err != nil {
		panic(err)
	}
	if e, ok, err := edge.Lookup(ctx, "cam1"); err == nil && ok && e.ServerID != "edge-1" {
		fmt.Println("pull cam1 from", e.ServerID, e.URI)
	}
	err = edge.Register(ctx, directory.Entry{Name: "cam1"})
	fmt.Println(errors.Is(err, directory.ErrOwnedElsewhere))
	// Output:
	// pull cam1 from origin-1 ws://127.0.0.1:8080
	// true
}
