package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/weftstore/weft/client"
)

// Store a file, read it back and check its availability certificate
// against the committee of the epoch that signed it. The control-plane
// addresses and the client token are what `weft devnet` prints.
func Example() {
	c, err := client.New(client.Config{
		Control: strings.Split(os.Getenv("WEFT_CONTROL"), ","),
		Token:   os.Getenv("WEFT_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	f, err := os.Open("photo.jpg")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	id, cert, err := c.Store(ctx, f, client.StoreOptions{Epochs: 5})
	if err != nil {
		log.Fatal(err) // a *client.QuorumError says which nodes failed and why
	}
	fmt.Println("stored", id, "certified in epoch", cert.Epoch)

	blob, err := c.Read(ctx, id, client.ReadOptions{}) // checked against the blob ID before it returns
	if err != nil {
		log.Fatal(err)
	}
	committee, err := c.Committee(ctx, cert.Epoch)
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Verify(cert, committee); err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(blob), "bytes read; certificate valid")
}
