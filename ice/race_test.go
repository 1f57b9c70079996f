//go:build race

package ice

func init() { raceEnabled = true }
