// Command decode_config decodes config files the way wireguard-go-vpp did: Go's encoding/json into
// fixed structs with the original's keys (spec section 3). It is the reference that the Rust decoder is
// compared with (tests/config_go_interop.rs).
//
// Usage: decode_config if|gw FILE...
// For each FILE it prints one JSON line: {"ok": <decoded struct>} or {"error": "<message>"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

type familySwitches struct {
	IPv4          bool `json:"IPv4"`
	IPv6          bool `json:"IPv6"`
	IPv6LinkLocal bool `json:"IPv6 link-local"`
}

type neighborFlags struct {
	Static     bool `json:"static"`
	NoFibEntry bool `json:"no-fib-entry"`
}

type interfaceConfig struct {
	UID                    uint32   `json:"uid"`
	Secret                 string   `json:"secret"`
	Macaddr                string   `json:"Macaddr,omitempty"`
	IPv4ArpResponseRanges  []string `json:"IPv4ArpResponseRanges"`
	IPv6NdpNeighAdvRanges  []string `json:"IPv6NdpNeighAdvRanges"`
	IPv4ArpLearningRanges  []string `json:"IPv4ArpLearningRanges"`
	IPv6NdpLearningRanges  []string `json:"IPv6NdpLearningRanges"`
	GratuitousARPOnStartUP bool     `json:"GratuitousARPOnStartUP"`
	VppBridgeID            uint32   `json:"VppBridgeID"`
}

type gatewayConfig struct {
	GatewayMacAddr        string         `json:"GatewayMacAddr"`
	WgIfMacaddrPrefix     string         `json:"WgIfMacaddrPrefix"`
	VppIfMacaddrPrefix    string         `json:"VppIfMacaddrPrefix"`
	InstallMethod         string         `json:"VppBridgeLoop_InstallMethod"`
	VppctlBinary          string         `json:"VppBridgeLoop_VppctlBinary"`
	SwIfName              string         `json:"VppBridgeLoop_SwIfName"`
	SwIfIndex             uint32         `json:"VppBridgeLoop_SwIfIndex"`
	InstallNeighbor       familySwitches `json:"VppBridgeLoop_InstallNeighbor"`
	InstallNeighborFlag   neighborFlags  `json:"VppBridgeLoop_InstallNeighbor_Flag"`
	InstallRoutes         familySwitches `json:"VppBridgeLoop_InstallRoutes"`
	CheckRouteConflict    bool           `json:"VppBridgeLoop_CheckRouteConflict"`
	CheckRouteConfigPaths []string       `json:"VppBridgeLoop_CheckRouteConfigPaths"`
}

// nonNil makes an absent list print as [] rather than null, as the Rust side writes it.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

func decode(kind string, data []byte) (interface{}, error) {
	if kind == "if" {
		var c interfaceConfig
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, err
		}
		c.IPv4ArpResponseRanges = nonNil(c.IPv4ArpResponseRanges)
		c.IPv6NdpNeighAdvRanges = nonNil(c.IPv6NdpNeighAdvRanges)
		c.IPv4ArpLearningRanges = nonNil(c.IPv4ArpLearningRanges)
		c.IPv6NdpLearningRanges = nonNil(c.IPv6NdpLearningRanges)
		return c, nil
	}
	var c gatewayConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	c.CheckRouteConfigPaths = nonNil(c.CheckRouteConfigPaths)
	return c, nil
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "if" && os.Args[1] != "gw") {
		fmt.Fprintln(os.Stderr, "usage: decode_config if|gw FILE...")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[2:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		decoded, err := decode(os.Args[1], data)
		if err != nil {
			out.Encode(map[string]string{"error": err.Error()})
		} else {
			out.Encode(map[string]interface{}{"ok": decoded})
		}
	}
}
